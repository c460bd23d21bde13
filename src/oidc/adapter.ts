/**
 * The oidc-provider storage adapter over knex: one table for every model, identical on SQLite and
 * PostgreSQL. Contract: node-oidc-provider example/my_adapter.js.
 */
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import type { Db } from '../db/connect.js';
import { createOidcPayloadQueries } from '../queries/oidc-payloads.js';

// Models whose rows are removed together when their grant is revoked.
const GRANTABLE = ['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest'];

export function createAdapterFactory(db: Db, clock: Clock) {
  const queries = createOidcPayloadQueries(db);
  const now = () => epochSeconds(clock);

  const parse = (found: { payload: string; consumed_at: number | null } | undefined): AdapterPayload | undefined => {
    if (!found) return undefined;
    const payload = JSON.parse(found.payload) as AdapterPayload;
    return found.consumed_at ? { ...payload, consumed: found.consumed_at } : payload;
  };

  return class KnexAdapter implements Adapter {
    constructor(private readonly kind: string) {}

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      await queries.upsert({
        kind: this.kind,
        id,
        payload: JSON.stringify(payload),
        grant_id: payload.grantId ?? null,
        user_code: payload.userCode ?? null,
        uid: payload.uid ?? null,
        expires_at: expiresIn ? now() + expiresIn : null,
        consumed_at: null,
      });
    }

    async find(id: string) { return parse(await queries.findLive(this.kind, 'id', id, now())); }

    async findByUid(uid: string) { return parse(await queries.findLive(this.kind, 'uid', uid, now())); }

    async findByUserCode(userCode: string) { return parse(await queries.findLive(this.kind, 'user_code', userCode, now())); }

    async consume(id: string) { await queries.consume(this.kind, id, now()); }

    async destroy(id: string) { await queries.destroy(this.kind, id); }

    async revokeByGrantId(grantId: string) {
      await Promise.all(GRANTABLE.map((kind) => queries.destroyByGrantId(kind, grantId)));
    }
  };
}

/** Deletes expired rows; run periodically by the server. */
export function deleteExpiredPayloads(db: Db, clock: Clock): Promise<number> {
  return createOidcPayloadQueries(db).deleteExpired(epochSeconds(clock));
}
