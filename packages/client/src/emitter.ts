/** A minimal typed event emitter (no Node dependency, so the SDK core also runs in browsers). */
export class Emitter<Events extends { [K in keyof Events]: (payload: any) => void }> {
  private readonly listeners = new Map<keyof Events, Set<(payload: unknown) => void>>();

  /** Subscribes to `event`; returns the function that unsubscribes. */
  on<K extends keyof Events>(event: K, listener: Events[K]): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as (payload: unknown) => void);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: Events[K]): void {
    this.listeners.get(event)?.delete(listener as (payload: unknown) => void);
  }

  /** Whether anyone listens to `event` (lets the caller skip building payloads). */
  has<K extends keyof Events>(event: K): boolean {
    return (this.listeners.get(event)?.size ?? 0) > 0;
  }

  /** Calls every listener; a throwing listener is reported to `onListenerError`, not to the emitter. */
  emit<K extends keyof Events>(event: K, payload: Parameters<Events[K]>[0]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(payload);
      } catch (error) {
        this.onListenerError(error, String(event));
      }
    }
  }

  /** Where listener exceptions go; by default re-thrown asynchronously so they surface. */
  onListenerError: (error: unknown, event: string) => void = (error) => {
    queueMicrotask(() => {
      throw error;
    });
  };
}
