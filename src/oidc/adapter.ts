/**
 * The oidc-provider storage adapter over knex: one table for every model, identical on SQLite and
 * PostgreSQL. Contract: node-oidc-provider example/my_adapter.js.
 */
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import type { Db } from '../db/connect.js';
import { createOidcPayloadQueries, type Durability, type LiveRow } from '../queries/oidc-payloads.js';
import { createReadAhead, type ReadAhead } from './read-ahead.js';

// Models whose rows are removed together when their grant is revoked.
const GRANTABLE = ['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest'];

// Single-use models: what a request that lost the race to consume one is told, when the row was used and
// when it is gone (oidc-provider's own errors: lib/helpers/grant_source.js,
// lib/actions/grants/refresh_token.js, lib/actions/authorization/respond.js), and whether its grant is
// revoked.
interface SingleUse { reused(): Error; gone(): Error; revokes: boolean }
const grantSource = (label: string, reuse = `${label} already consumed`): SingleUse => ({
  reused: () => new errors.InvalidGrant(reuse), gone: () => new errors.InvalidGrant(`${label} not found`), revokes: true,
});
const requestUriUsed = () => new errors.InvalidRequestUri('request_uri is invalid, expired, or was already used');
const SINGLE_USE: Record<string, SingleUse> = {
  AuthorizationCode: grantSource('authorization code'),
  RefreshToken: grantSource('refresh token', 'refresh token already used'),
  DeviceCode: grantSource('device code'),
  BackchannelAuthenticationRequest: grantSource('backchannel authentication request'),
  PushedAuthorizationRequest: { reused: requestUriUsed, gone: requestUriUsed, revokes: false },
};

/**
 * The models whose upserts only issue something new, or record a step the user would take again, so
 * that losing one in a crash of the database server fails closed: a token, code or pushed request it
 * forgot is refused as an unknown one (its holder signs in again), a sign-in page's step is asked again.
 * With `postgres_issuance_commit: async` their upserts commit asynchronously (asyncUpsertSql,
 * src/queries/oidc-payloads.ts). Not Session or Grant: an update of either can take something away (an
 * app signed out of the session, a narrower consent), which a crash must not give back. Consuming,
 * destroying and revoking are always synchronous (consume, destroy, revokeByGrantId), and so is every
 * other model: ReplayDetection, for one, records a use (forgotten, a client assertion could be replayed).
 */
const FAILS_CLOSED = new Set(['Interaction', 'AccessToken', 'ClientCredentials', 'AuthorizationCode', 'RefreshToken',
  'DeviceCode', 'BackchannelAuthenticationRequest', 'PushedAuthorizationRequest']);

/** How soon an upsert of `kind` must be durable (see FAILS_CLOSED). */
export const upsertDurability = (kind: string, asyncIssuance: boolean): Durability =>
  (asyncIssuance && FAILS_CLOSED.has(kind) ? 'soon' : 'now');

// What a request names (a token, code, client_id, interaction uid, user code) may hold a NUL character,
// which PostgreSQL refuses in text (SQLSTATE 22021: a server error, not an answer). No stored id holds
// one: oidc-provider makes them, and SQLite would find nothing either. Such a value is simply not found.
const storable = (value: string) => !value.includes('\u0000');

/**
 * The account a row belongs to, so that signing an account out everywhere finds all of it: tokens, grants
 * and sessions name it; an interaction names the session it began from, and once a sign-in has finished
 * in it, the user it signed in (until it resumes, that is a sign-in waiting to become a session).
 */
const accountOf = (payload: AdapterPayload): string | null =>
  payload.accountId ?? (payload.result?.login as { accountId?: string } | undefined)?.accountId ?? payload.session?.accountId ?? null;

export function createAdapterFactory(db: Db, clock: Clock, readAhead: ReadAhead = createReadAhead(), options: { asyncIssuance?: boolean } = {}) {
  const queries = createOidcPayloadQueries(db);
  const now = () => epochSeconds(clock);

  const parse = (found: LiveRow | undefined): AdapterPayload | undefined => {
    if (!found) return undefined;
    const payload = JSON.parse(found.payload) as AdapterPayload;
    return found.consumed_at ? { ...payload, consumed: found.consumed_at } : payload;
  };

  return class KnexAdapter implements Adapter {
    private readonly durability: Durability;

    constructor(private readonly kind: string) {
      this.durability = upsertDurability(kind, options.asyncIssuance ?? false);
    }

    // The hot paths (upsert, find) hand back the queries' promises instead of awaiting them: every async
    // layer costs promises, which cost more with async hooks on (oidc-provider's request context).
    upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      const grant = this.kind === 'Grant';
      if (grant) readAhead.forget(`grant:${id}`);
      const written = queries.upsert({
        kind: this.kind,
        id,
        payload: JSON.stringify(payload),
        grant_id: payload.grantId ?? null,
        account_id: accountOf(payload),
        user_code: payload.userCode ?? null,
        uid: payload.uid ?? null,
        expires_at: expiresIn ? now() + expiresIn : null,
        consumed_at: null,
      }, this.durability);
      // Again after the write: a read of this request that was in flight meanwhile may have kept the old row.
      return grant ? written.then(() => readAhead.forget(`grant:${id}`)) : written;
    }

    // A token of a grant comes with its grant and its user (read-ahead.ts).
    find(id: string): Promise<AdapterPayload | undefined> {
      if (!storable(id)) return Promise.resolve(undefined);
      if (this.kind === 'Grant') {
        const early = readAhead.take<LiveRow>(`grant:${id}`);
        if (early) return Promise.resolve(parse(early));
      }
      if (!GRANTABLE.includes(this.kind) || !readAhead.active()) return queries.findLive(this.kind, 'id', id, now()).then(parse);
      return queries.findLiveWithGrantAndUser(this.kind, id, now()).then((found) => {
        if (found?.grant) readAhead.keep(`grant:${found.grant.id}`, found.grant.row);
        if (found?.user) readAhead.keep(`user:${found.user.id}`, found.user);
        return parse(found?.row);
      });
    }

    async findByUid(uid: string) {
      return storable(uid) ? parse(await queries.findLive(this.kind, 'uid', uid, now())) : undefined;
    }

    async findByUserCode(userCode: string) {
      return storable(userCode) ? parse(await queries.findLive(this.kind, 'user_code', userCode, now())) : undefined;
    }

    /**
     * oidc-provider checks `consumed` when it reads a code, refresh token or pushed request and consumes it
     * a few awaits later (lib/helpers/grant_source.js, lib/actions/authorization/respond.js): requests
     * racing with one code would all pass the check. The database decides instead: only the request whose
     * UPDATE marks the row gets on; the others are refused as oidc-provider refuses a reuse it sees, and
     * for grants everything issued under the grant is revoked (RFC 6749 §4.1.2: a code used twice is
     * refused, and its tokens SHOULD be revoked; RFC 9700 §4.14.2 for refresh tokens). This revocation
     * emits no `grant.revoked` event and does not ask `revokeGrantPolicy` (neither is used here).
     */
    async consume(id: string) {
      if (await queries.consume(this.kind, id, now())) return;
      const single = SINGLE_USE[this.kind];
      if (!single) return;
      // Gone rather than used: revoked, or removed by the clean-up, since it was read.
      const row = await queries.stored(this.kind, id);
      if (!row) throw single.gone();
      const grantId = single.revokes ? row.grant_id : null;
      if (grantId) {
        await this.revokeByGrantId(grantId); // also drops the grant this request kept
        await queries.destroy('Grant', grantId);
      }
      throw single.reused();
    }

    async destroy(id: string) {
      // oidc-provider's resume reads the interaction, destroys it and goes on to issue the code without
      // asking whether the row was still there (lib/actions/authorization/resume.js): parallel resumes of
      // one sign-in each got a code. The delete decides: only the resume whose delete removed the row goes on.
      if (this.kind === 'Interaction') {
        if (!(await queries.destroyOnce(this.kind, id))) throw new errors.SessionNotFound('interaction session not found');
        return;
      }
      if (this.kind === 'Grant') readAhead.forget(`grant:${id}`);
      await queries.destroy(this.kind, id);
      if (this.kind === 'Grant') readAhead.forget(`grant:${id}`);
    }

    async revokeByGrantId(grantId: string) {
      readAhead.forget(`grant:${grantId}`);
      await Promise.all(GRANTABLE.map((kind) => queries.destroyByGrantId(kind, grantId)));
      readAhead.forget(`grant:${grantId}`);
    }
  };
}
