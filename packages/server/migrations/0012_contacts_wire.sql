-- A contact's wire form (the JSON object devices receive), kept by the database on every write:
-- a record is written once and read by every device, so a pull reads stored text by a range
-- scan of (tenant_id, version) instead of building JSON for every record it returns
-- (docs/sync-protocol.md "Stored wire form"). Every writer is covered, whatever its path: the
-- column is generated. The function is IMMUTABLE because its result depends on its arguments
-- alone (UTC timestamps in a fixed format; uuid, boolean and bigint output do not depend on
-- settings). Changing the wire form later takes a migration that recomputes the column.
CREATE FUNCTION contact_wire(
  id uuid, version bigint, first_name text, last_name text, phone_primary text, phone_secondary text, email text,
  company text, notes text, external_id text, do_not_call boolean, preferred_channel text, photo_file_id uuid,
  created_by_agent text, is_deleted boolean, created_at timestamptz, updated_at timestamptz
) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT json_build_object(
    'id', id, 'version', version, 'firstName', first_name, 'lastName', last_name,
    'phonePrimary', phone_primary, 'phoneSecondary', phone_secondary, 'email', email,
    'company', company, 'notes', notes, 'externalId', external_id, 'doNotCall', do_not_call,
    'preferredChannel', preferred_channel, 'photoFileId', photo_file_id,
    'createdByAgent', created_by_agent, 'isDeleted', is_deleted,
    'createdAt', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'updatedAt', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text
$$;

-- Existing rows get theirs as the table is rewritten.
ALTER TABLE contacts ADD COLUMN wire text NOT NULL GENERATED ALWAYS AS (
  contact_wire(id, version, first_name, last_name, phone_primary, phone_secondary, email, company, notes, external_id,
               do_not_call, preferred_channel, photo_file_id, created_by_agent, is_deleted, created_at, updated_at)
) STORED;
