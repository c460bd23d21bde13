import type { Knex } from 'knex';

export interface KeyRow {
  id: string;
  kind: 'signing' | 'cookie' | 'secret-check' | 'wrapped';
  material: string;
  created_at: number;
}

export function createKeystoreQueries(db: Knex | Knex.Transaction) {
  const table = () => db('keystore');
  return {
    /** Inserts unless a key with this id exists: concurrent first starts converge on one winner. */
    async insertIfAbsent(row: KeyRow): Promise<void> {
      await table().insert(row).onConflict('id').ignore();
    },
    async find(id: string): Promise<KeyRow | undefined> {
      const r = await table().where({ id }).first();
      return r ? { id: String(r.id), kind: r.kind, material: String(r.material), created_at: Number(r.created_at) } : undefined;
    },
    async updateMaterial(id: string, material: string): Promise<void> {
      await table().where({ id }).update({ material });
    },
    async list(kind: KeyRow['kind']): Promise<KeyRow[]> {
      const rows: Record<string, unknown>[] = await table().select('*').where({ kind }).orderBy('created_at', 'desc');
      return rows.map((r) => ({ id: String(r.id), kind, material: String(r.material), created_at: Number(r.created_at) }));
    },
  };
}
