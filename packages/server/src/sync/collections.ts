/**
 * The registry of synced collections. A domain module describes its collection once (table,
 * wire projection, scope); the pull engine and the push engine read it from here and know
 * nothing else about the domain.
 */
export interface CollectionDef {
  /** Wire name, plural: `contacts`. */
  name: string;
  /** Other names accepted on the wire (the seed's singular forms). */
  aliases: string[];
  /** Table; it has tenant_id, id, version, is_deleted and a (tenant_id, version) index. */
  table: string;
  /** SQL expression over alias `r` that builds the record's wire object (camelCase). */
  wireSql: string;
  /** Who may see a record: `tenant` means every user of the tenant. */
  scope: 'tenant';
}

export class CollectionRegistry {
  private readonly byName = new Map<string, CollectionDef>();
  private readonly ordered: CollectionDef[] = [];

  register(def: CollectionDef): void {
    for (const name of [def.name, ...def.aliases]) {
      if (this.byName.has(name)) throw new Error(`collection name ${name} registered twice`);
      this.byName.set(name, def);
    }
    this.ordered.push(def);
  }

  /** The collection a wire name (plural or singular) means, or undefined. */
  resolve(name: string): CollectionDef | undefined {
    return this.byName.get(name);
  }

  all(): readonly CollectionDef[] {
    return this.ordered;
  }
}
