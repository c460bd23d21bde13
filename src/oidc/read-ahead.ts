/**
 * Rows one oidc-provider request read before it asks for them.
 *
 * oidc-provider reads a token's grant and its account right after the token: the authorization_code and
 * refresh_token grants (lib/helpers/grant_source.js validateGrant, then findAccount), userinfo
 * (lib/shared/access_token.js) and introspection. So the adapter reads a token of a grant together with
 * its grant and its user, in one statement (a round trip fewer for each on PostgreSQL), and keeps them
 * here for that request's next read of them (adapter.ts `Grant.find`, account.ts `findAccount`). A kept
 * row is taken once; a grant is dropped when the request itself writes it (users are written only by our
 * own pages and the CLI, never inside an oidc-provider request); other requests, and reads outside a
 * request, always go to the database. What a request takes is what the database held when it read the
 * token, the state it would have seen had the two reads followed each other a little faster.
 */
import Provider from 'oidc-provider';

/** Names the current request: oidc-provider's own context (AsyncLocalStorage); tests pass their own. */
export type RequestScope = () => object | undefined;
const providerRequest: RequestScope = () => Provider.ctx;

export type ReadAhead = ReturnType<typeof createReadAhead>;

export function createReadAhead(requestScope: RequestScope = providerRequest) {
  const kept = new WeakMap<object, Map<string, unknown>>();
  return {
    /** Whether reads happen within a request (else nothing is kept). */
    active: () => requestScope() !== undefined,
    keep(key: string, value: unknown): void {
      const scope = requestScope();
      if (!scope) return;
      const rows = kept.get(scope);
      if (rows) rows.set(key, value);
      else kept.set(scope, new Map([[key, value]]));
    },
    /** The kept row, removed; undefined when there is none. */
    take<T>(key: string): T | undefined {
      const scope = requestScope();
      const rows = scope ? kept.get(scope) : undefined;
      const value = rows?.get(key) as T | undefined;
      if (value !== undefined) rows!.delete(key);
      return value;
    },
    forget(key: string): void {
      const scope = requestScope();
      if (scope) kept.get(scope)?.delete(key);
    },
  };
}
