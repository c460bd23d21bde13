/** Wires the domain services to the queries layer once; handlers and the CLI receive what they need. */
import type { Clock } from './clock.js';
import { epochSeconds } from './clock.js';
import type { Config } from './config/load.js';
import { DEFAULT_NAME } from './config/schema.js';
import type { Db } from './db/connect.js';
import type { Logger } from './log.js';
import { createPasswordVerifier } from './auth/password.js';
import { createKeyedHash, createSecretBox } from './auth/secret-box.js';
import { createTotpService } from './auth/totp.js';
import { createRecoveryCodeService } from './auth/recovery-codes.js';
import { createPasskeyService } from './auth/passkeys.js';
import { createSignInProgress } from './auth/sign-in-progress.js';
import { createEnrollmentReader, createFactorRemoval } from './auth/factors.js';
import { createUserService } from './auth/users.js';
import { createSignOut } from './auth/sign-out.js';
import { createOidcPayloadQueries } from './queries/oidc-payloads.js';
import { createUserQueries } from './queries/users.js';
import { createPasskeyQueries } from './queries/passkeys.js';
import { createTotpQueries } from './queries/totp.js';
import { createRecoveryCodeQueries } from './queries/recovery-codes.js';
import { createEnrollmentQueries } from './queries/enrollment.js';
import { createChallengeQueries } from './queries/challenges.js';
import { createSignInProgressQueries } from './queries/sign-in-progress.js';
import { createThrottleQueries } from './queries/throttle.js';
import { createSecurityEventQueries } from './queries/security-events.js';
import { createThrottle } from './auth/throttle.js';
import { createAudit } from './auth/audit.js';
import type { Metrics } from './http/metrics.js';

export function createServices(deps: { config: Config; db: Db; clock: Clock; log: Logger; secretKey: Buffer; pepper: Buffer; metrics?: Metrics }) {
  const { config, db, clock, log } = deps;
  const box = createSecretBox(deps.secretKey);
  const users = createUserQueries(db);
  const passkeyQueries = createPasskeyQueries(db);
  // The issuer authenticator apps show: the operator's name for this provider, else its host name (several
  // providers all called wrnexus-sso would look alike there; without the port, whose colon would split the
  // app's label, issuer:account, in the wrong place).
  const totpIssuer = config.name === DEFAULT_NAME ? new URL(config.issuer).hostname : config.name;
  const totp = createTotpService({ totp: createTotpQueries(db), box, clock, issuerName: totpIssuer });
  const keyedHash = createKeyedHash(deps.pepper);
  const recovery = createRecoveryCodeService({ codes: createRecoveryCodeQueries(db), hash: keyedHash, clock });
  const payloads = createOidcPayloadQueries(db);
  const progressQueries = createSignInProgressQueries(db);
  const enrollment = createEnrollmentQueries(db);
  const signOut = createSignOut({ payloads, progress: progressQueries, clock });
  const passkeys = createPasskeyService({
    passkeys: passkeyQueries, challenges: createChallengeQueries(db), clock, issuer: config.issuer, rpName: config.name, log,
  });
  return {
    box,
    users,
    userService: createUserService({ users, policy: config.password, clock, signOut }),
    signOut,
    /** The account pages' use of a session: its expiry moves as on oidc-provider's own endpoints (touchSession). */
    sessionUsed: (sessionId: string) => payloads.touchSession(sessionId, epochSeconds(clock) + config.ttl.session, epochSeconds(clock)),
    verifier: createPasswordVerifier(config.password),
    /** A login no user has, as the throttle names it: keyed (the pepper every instance shares), never in clear. */
    hashLogin: (normalised: string) => keyedHash(`throttle-login:${normalised}`),
    passkeyQueries,
    passkeys,
    totp,
    recovery,
    enrolled: createEnrollmentReader({ queries: enrollment }),
    removeFactor: createFactorRemoval({ queries: enrollment }),
    progress: createSignInProgress({ queries: progressQueries, clock, ttlSeconds: config.ttl.interaction }),
    challenges: createChallengeQueries(db),
    throttle: createThrottle({
      queries: createThrottleQueries(db), clock, policy: config.throttle, onRefused: (scope) => deps.metrics?.throttled.inc({ scope }),
    }),
    audit: createAudit({
      events: createSecurityEventQueries(db), clock, log,
      observe: (event) => {
        if (event.type !== 'sign_in') return;
        // A finished sign-in is labelled with every factor it took, in the order of its amr ("pwd+hwk"): a
        // handful of values. A failed or refused one names the factor being checked.
        const factor = event.outcome === 'success' ? String(event.detail?.amr ?? '').split(' ').filter(Boolean).join('+') : event.detail?.factor;
        deps.metrics?.signIns.inc({ outcome: event.outcome, factor: String(factor || 'unknown') });
      },
    }),
  };
}

export type Services = ReturnType<typeof createServices>;

/**
 * The periodic clean-up (main.ts, every 10 minutes on every instance): expired rows are already ignored on
 * read, this keeps the tables small. Every delete is idempotent, so instances running it at once agree.
 */
export function cleanUp(services: Services, deps: { db: Db; clock: Clock; config: Config }): Promise<number[]> {
  return Promise.all([
    createOidcPayloadQueries(deps.db).deleteExpired(epochSeconds(deps.clock)),
    services.challenges.deleteExpired(epochSeconds(deps.clock)),
    services.progress.deleteExpired(),
    services.throttle.deleteStale(),
    services.audit.prune(deps.config.audit.retention_days * 86_400),
  ]);
}
