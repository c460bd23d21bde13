/**
 * The OAuth 2.0 / OpenID Connect engine is node-oidc-provider: this file only configures it.
 * Reference: node-oidc-provider docs/README.md (Configuration options).
 */
import Provider, { errors, interactionPolicy, type ClientMetadata, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Clock } from '../clock.js';
import type { Config } from '../config/load.js';
import { AUTH_METHODS, SCOPES } from '../config/schema.js';
import type { Db } from '../db/connect.js';
import { ACR_ORDER } from '../auth/assurance.js';
import { acrRequest, factorsFromAmr } from '../auth/sign-in-policy.js';
import { acrFor } from '../auth/assurance.js';
import { renderPage } from '../http/views.js';
import type { UserQueries } from '../queries/users.js';
import { createFindAccount } from './account.js';
import { createAdapterFactory } from './adapter.js';
import { createReadAhead } from './read-ahead.js';
import type { ProviderKeys } from './keys.js';

export const CUSTOM_CLIENT_FIELDS = ['mfa_policy', 'skip_consent', 'require_pkce'] as const;

export function clientMetadata(config: Config): ClientMetadata[] {
  return config.clients.map((client) => {
    const { scope, ...rest } = client;
    return { ...rest, scope: scope ?? SCOPES.join(' ') } as ClientMetadata;
  });
}

const EXPIRED = /authorization request has expired|interaction session not found|session and cookie identifier mismatch|authentication session mismatch/;

/** What an error page of the library's endpoints tells a person (renderError). */
export function friendlyError(error: string, description: string | undefined): string {
  if (description && EXPIRED.test(description)) return 'This sign-in has already finished or has expired. Go back to the app and start again.';
  if (error === 'invalid_client') return 'The app that sent you here is not registered here. Tell the app’s administrator.';
  if (error === 'invalid_redirect_uri') return 'The app that sent you here asked to come back to an address it has not registered. Tell the app’s administrator.';
  return description ?? 'The request could not be completed.';
}

/** The app a logout page names: none for the account pages, which are wrnexus-sso itself. */
const appName = (ctx: KoaContextWithOIDC) => (ctx.oidc.client?.clientId === ACCOUNT_CLIENT_ID ? undefined
  : ctx.oidc.client?.clientName ?? ctx.oidc.client?.clientId);

/** Answers whether an existing session falls short of what a request demands (step-up). */
export type StepUpCheck = (input: {
  accountId: string; amr: string[] | undefined; loginTs: number; mfaPolicy: string; requested: string[];
}) => Promise<boolean>;

/** Answers whether an existing session is too old or idle to count (AAL2 timing). */
export type SessionExpiredCheck = (input: { loginTs: number; lastSeen: number; amr: string[] | undefined }) => boolean;

export interface ProviderDeps {
  config: Config;
  db: Db;
  clock: Clock;
  keys: ProviderKeys;
  users: UserQueries;
  needsStepUp: StepUpCheck;
  sessionExpired: SessionExpiredCheck;
}

/**
 * What the provider speaks, apart from storage, accounts, keys and pages. `npm run bench` gives the bare
 * library the same, so that the two publish the same discovery document.
 */
export const PROTOCOL = {
  scopes: [...SCOPES],
  // Authorization code only (RFC 9700 §2.1.2: no tokens from the authorization endpoint).
  responseTypes: ['code'],
  clientAuthMethods: [...AUTH_METHODS],
  // acr, amr and auth_time ride with `openid` so they reach the ID token (OIDC Core §2, §5.5.1.1).
  claims: {
    openid: ['sub', 'acr', 'amr', 'auth_time'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  acrValues: [...ACR_ORDER],
} satisfies Configuration;

/** The optional features we turn on (their settings are in createProvider). */
export const PROTOCOL_FEATURES = ['claimsParameter', 'clientCredentials', 'introspection', 'revocation', 'userinfo', 'rpInitiatedLogout'] as const;

/** The account pages sign in through the provider like any app: a first-party public client. */
export const ACCOUNT_CLIENT_ID = 'wrnexus-account';

function accountClient(issuer: string): ClientMetadata {
  return {
    client_id: ACCOUNT_CLIENT_ID,
    client_name: 'Your account',
    token_endpoint_auth_method: 'none',
    redirect_uris: [`${issuer}/account/callback`],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    scope: 'openid',
    skip_consent: true,
    mfa_policy: 'if-enrolled',
  };
}

/**
 * The login prompt of oidc-provider's default policy, plus our check: `acr_values` alone never
 * triggers a prompt in the library, and a session may predate the user's newest factor.
 */
function loginPolicy(needsStepUp: StepUpCheck, sessionExpired: SessionExpiredCheck, sessionTtl: number) {
  const { base, Check } = interactionPolicy;
  const policy = base();
  // A session whose user was disabled or deleted meanwhile (findAccount finds no account): sign in again.
  // Without this the session still named the user, no grant was loaded for it, and the consent prompt's
  // checks failed on the missing grant (a 500 at every authorization from that browser, whoever signed in).
  // Also after the result of a sign-in: the user may have been disabled between the password and consent.
  policy.get('login')!.checks.add(new Check('account_gone', 'the signed-in account no longer exists or is disabled', 'login_required',
    (ctx) => (ctx.oidc.session?.accountId && !ctx.oidc.account ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT)));
  // The provider slides a session's expiry on every save, so `exp - ttl` is when it was last used. OIDC
  // Core §3.1.2.6: login_required when the user must authenticate (prompt=none gets it).
  policy.get('login')!.checks.add(new Check('session_expired', 'the session is too old or idle and must sign in again', 'login_required', (ctx) => {
    const { oidc } = ctx;
    if (!oidc.session?.accountId || oidc.result?.login) return Check.NO_NEED_TO_PROMPT;
    const session = oidc.session as unknown as { amr?: string[]; loginTs?: number; exp?: number };
    const expired = sessionExpired({
      loginTs: session.loginTs ?? 0,
      lastSeen: (session.exp ?? 0) - sessionTtl,
      amr: session.amr,
    });
    return expired ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT;
  }));
  // The library's own acr checks compare the requested value with the session's acr as a string (a
  // phrh session asked for an essential mfa went back to sign-in; prompt=none was refused), and an
  // essential value no sign-in can give sent the browser round in circles. These two replace them.
  policy.get('login')!.checks.remove('essential_acrs');
  policy.get('login')!.checks.remove('essential_acr');
  policy.get('login')!.checks.add(new Check('unsupported_acr', 'none of the requested essential acr values is supported',
    'unmet_authentication_requirements', (ctx) => {
      if (ctx.oidc.result?.login) return Check.NO_NEED_TO_PROMPT;
      return acrRequest({ claims: ctx.oidc.params?.claims }).unsupported ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT;
    }));
  policy.get('login')!.checks.add(new Check('step_up', 'the session does not meet the requested authentication', 'interaction_required',
    async (ctx) => {
      const { oidc } = ctx;
      if (!oidc.session?.accountId || oidc.result?.login) return Check.NO_NEED_TO_PROMPT;
      const session = oidc.session as unknown as { amr?: string[]; loginTs?: number; acr?: string };
      const requested = acrRequest({ acr_values: oidc.params?.acr_values, claims: oidc.params?.claims }).values;
      const shortfall = await needsStepUp({
        accountId: oidc.session.accountId,
        amr: session.amr,
        loginTs: session.loginTs ?? 0,
        mfaPolicy: String(oidc.client?.mfa_policy ?? 'if-enrolled'),
        requested,
      });
      if (shortfall) return Check.REQUEST_PROMPT;
      // The session will do. Its acr was chosen for the request that signed it in; the tokens of this one
      // say what this one asked for (the ID token takes the session's acr: oidc_context.js, get acr()).
      session.acr = acrFor(factorsFromAmr(session.amr, session.loginTs ?? 0), requested);
      return Check.NO_NEED_TO_PROMPT;
    }));
  return policy;
}

export function createProvider({ config, db, clock, keys, users, needsStepUp, sessionExpired }: ProviderDeps): Provider {
  const secure = config.issuer.startsWith('https:');
  const readAhead = createReadAhead();
  const configuration: Configuration = {
    adapter: createAdapterFactory(db, clock, readAhead, { asyncIssuance: config.postgres_issuance_commit === 'async' }),
    clients: [...clientMetadata(config), accountClient(config.issuer)],
    findAccount: createFindAccount(users, readAhead),
    jwks: keys.jwks,
    cookies: {
      keys: keys.cookieKeys,
      // Over https: __Host- where the cookie's path is / (the session), __Secure- elsewhere (RFC 6265bis §4.1.3).
      names: secure
        ? { session: '__Host-idp_session', interaction: '__Secure-idp_interaction', resume: '__Secure-idp_resume' }
        : { session: '_session', interaction: '_interaction', resume: '_interaction_resume' },
      long: { httpOnly: true, sameSite: 'lax', secure, signed: true },
      short: { httpOnly: true, sameSite: 'lax', secure, signed: true },
    },
    ...PROTOCOL,
    extraClientMetadata: {
      properties: [...CUSTOM_CLIENT_FIELDS],
    },
    features: {
      devInteractions: { enabled: false },
      claimsParameter: {
        enabled: true,
        // The library's own check (members are null or objects, lib/helpers/defaults.js), and an essential
        // acr in a shape it cannot be met in: without the library's essential_acr checks (loginPolicy) it
        // would be ignored and the app given less than it demanded (OIDC Core §5.5.1).
        async assertClaimsParameter(_ctx, claims) {
          for (const container of ['userinfo', 'id_token'] as const) {
            for (const value of Object.values(claims[container] ?? {})) {
              if (value !== null && (typeof value !== 'object' || Array.isArray(value))) {
                throw new errors.InvalidRequest(`claims.${container} members must be null or objects`);
              }
            }
          }
          if (acrRequest({ claims }).malformed) {
            throw new errors.InvalidRequest('claims.id_token.acr: value must be a string and values an array of strings');
          }
        },
      },
      clientCredentials: { enabled: true },
      // A resource server (confidential client) may introspect any token; a public client only its own.
      introspection: {
        enabled: true,
        async allowedPolicy(_ctx, client, token) {
          return client.clientAuthMethod !== 'none' || token.clientId === client.clientId;
        },
      },
      // A client revokes only tokens issued to it (RFC 7009 §2.1).
      revocation: {
        enabled: true,
        async allowedPolicy(_ctx, client, token) {
          return token.clientId === client.clientId;
        },
      },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // The account pages run on the provider's session itself: signing out of them alone would sign
        // out of nothing, so from there the page only asks about wrnexus-sso (an audit finding: "No, only
        // Your account" said "You are signed out" while the account page stayed signed in).
        async logoutSource(ctx, form) {
          renderPage(ctx, 'logout', { title: 'Sign out', form, clientName: appName(ctx) });
        },
        // Also reached after "No": it says what is true, signed out or still signed in.
        async postLogoutSuccessSource(ctx) {
          const session = await ctx.oidc.provider.Session.get(ctx) as unknown as { accountId?: string };
          const stillSignedIn = Boolean(session.accountId);
          renderPage(ctx, 'logged-out', { title: stillSignedIn ? 'Still signed in' : 'Signed out', clientName: appName(ctx), stillSignedIn });
        },
      },
    },
    // PKCE for every client unless its entry says require_pkce: false (RFC 9700 §2.1.1; OAuth 2.1): a code
    // stolen on its way back is then worth nothing without the verifier. Public clients always.
    pkce: {
      required: (_ctx, client) => client.clientAuthMethod === 'none' || (client as { require_pkce?: boolean }).require_pkce !== false,
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
      policy: loginPolicy(needsStepUp, sessionExpired, config.ttl.session),
    },
    // Resource servers learn how the user signed in, from introspection (RFC 9470 §3 needs acr and auth_time).
    async extraTokenClaims(ctx, token) {
      const entities = ctx.oidc.entities as { AuthorizationCode?: { acr?: string; authTime?: number }; RefreshToken?: { acr?: string; authTime?: number } };
      const source = entities.AuthorizationCode ?? entities.RefreshToken;
      if (!source || !(token as { accountId?: string }).accountId) return undefined;
      return { acr: source.acr, auth_time: source.authTime };
    },
    // First-party clients (skip_consent) get the requested scopes without the consent page.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId ?? oidc.session!.grantIdFor(oidc.client!.clientId);
      if (grantId) {
        const existing = await oidc.provider.Grant.find(grantId);
        if (existing) return existing;
      }
      if (oidc.client!.skip_consent === true && oidc.session?.accountId) {
        const grant = new oidc.provider.Grant({ clientId: oidc.client!.clientId, accountId: oidc.session.accountId });
        grant.addOIDCScope([...oidc.requestParamScopes].join(' '));
        const claims = Object.keys({ ...oidc.claims?.id_token, ...oidc.claims?.userinfo });
        if (claims.length > 0) grant.addOIDCClaims(claims);
        await grant.save();
        return grant;
      }
      return undefined;
    },
    // Browser-based clients may call the token endpoints from the origins of their redirect URIs only.
    clientBasedCORS(_ctx, origin, client) {
      return client.redirectUris?.some((uri) => {
        try { return new URL(uri).origin === origin; } catch { return false; }
      }) ?? false;
    },
    // The person at the browser reads this page, not the app's developer: the library's words for the
    // common cases become what to do next (the error code stays for whoever debugs it).
    async renderError(ctx, out) {
      renderPage(ctx, 'error', {
        title: 'Something went wrong',
        error: out.error,
        description: friendlyError(out.error, out.error_description),
      }, ctx.status >= 400 ? ctx.status : 400);
    },
    ttl: {
      Session: config.ttl.session,
      Interaction: config.ttl.interaction,
      AuthorizationCode: config.ttl.authorization_code,
      AccessToken: config.ttl.access_token,
      ClientCredentials: config.ttl.access_token,
      IdToken: config.ttl.id_token,
      RefreshToken: config.ttl.refresh_token,
      Grant: config.ttl.grant,
    },
  };
  const provider = new Provider(config.issuer, configuration);
  // Behind a TLS-terminating proxy the issuer is https while the socket is plain http.
  provider.proxy = secure;
  return provider;
}
