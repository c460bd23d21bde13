/**
 * The oidc-provider storage adapter over knex: one table for every model, identical on SQLite and
 * PostgreSQL. Contract: node-oidc-provider example/my_adapter.js.
 */
import Provider, { type Adapter, type AdapterPayload } from 'oidc-provider';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import type { Db } from '../db/connect.js';
import { createOidcPayloadQueries, type LiveRow } from '../queries/oidc-payloads.js';

// Models whose rows are removed together when their grant is revoked.
const GRANTABLE = ['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest'];

/**
 * oidc-provider reads a token's grant right after the token: the authorization_code and refresh_token
 * grants (lib/helpers/grant_source.js, validateGrant), userinfo (lib/shared/access_token.js) and
 * introspection. So within one request a token of a grant is read together with its grant, in one
 * statement (a round trip fewer on PostgreSQL), and the grant is kept for that request's next read of it.
 * It is taken once, and dropped when the request itself writes or revokes the grant; other requests,
 * and reads outside a request, always go to the database. `requestScope` names the request (oidc-provider's
 * own context; tests pass their own).
 */
export type RequestScope = () => object | undefined;
const providerRequest: RequestScope = () => Provider.ctx;

export function createAdapterFactory(db: Db, clock: Clock, requestScope: RequestScope = providerRequest) {
  const queries = createOidcPayloadQueries(db);
  const now = () => epochSeconds(clock);
  const grantsReadAhead = new WeakMap<object, Map<string, LiveRow>>();
  const forgetGrant = (grantId: string) => {
    const scope = requestScope();
    if (scope) grantsReadAhead.get(scope)?.delete(grantId);
  };

  const parse = (found: { payload: string; consumed_at: number | null } | undefined): AdapterPayload | undefined => {
    if (!found) return undefined;
    const payload = JSON.parse(found.payload) as AdapterPayload;
    return found.consumed_at ? { ...payload, consumed: found.consumed_at } : payload;
  };

  return class KnexAdapter implements Adapter {
    constructor(private readonly kind: string) {}

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      if (this.kind === 'Grant') forgetGrant(id);
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
      // Again after the write: a read of this request that was in flight meanwhile may have kept the old row.
      if (this.kind === 'Grant') forgetGrant(id);
    }

    async find(id: string) {
      const scope = requestScope();
      if (!scope) return parse(await queries.findLive(this.kind, 'id', id, now()));
      const kept = grantsReadAhead.get(scope);
      const early = this.kind === 'Grant' ? kept?.get(id) : undefined;
      if (early) {
        kept!.delete(id);
        return parse(early);
      }
      if (!GRANTABLE.includes(this.kind)) return parse(await queries.findLive(this.kind, 'id', id, now()));
      const found = await queries.findLiveWithGrant(this.kind, id, now());
      if (found?.grant) {
        const keep = grantsReadAhead.get(scope);
        if (keep) keep.set(found.grant.id, found.grant.row);
        else grantsReadAhead.set(scope, new Map([[found.grant.id, found.grant.row]]));
      }
      return parse(found?.row);
    }

    async findByUid(uid: string) { return parse(await queries.findLive(this.kind, 'uid', uid, now())); }

    async findByUserCode(userCode: string) { return parse(await queries.findLive(this.kind, 'user_code', userCode, now())); }

    async consume(id: string) { await queries.consume(this.kind, id, now()); }

    async destroy(id: string) {
      if (this.kind === 'Grant') forgetGrant(id);
      await queries.destroy(this.kind, id);
      if (this.kind === 'Grant') forgetGrant(id);
    }

    async revokeByGrantId(grantId: string) {
      forgetGrant(grantId);
      await Promise.all(GRANTABLE.map((kind) => queries.destroyByGrantId(kind, grantId)));
      forgetGrant(grantId);
    }
  };
}

/** Deletes expired rows; run periodically by the server. */
export function deleteExpiredPayloads(db: Db, clock: Clock): Promise<number> {
  return createOidcPayloadQueries(db).deleteExpired(epochSeconds(clock));
}
