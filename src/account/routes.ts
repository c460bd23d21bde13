/**
 * `/account`: a signed-in user's security settings (passkeys, authenticator app, recovery codes,
 * password). The pages sign in through the provider like any app (client `wrnexus-account`); changes
 * need a sign-in from the last 10 minutes with the user's strongest factor.
 */
import { createHash, randomBytes } from 'node:crypto';
import type Router from '@koa/router';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { Clock } from '../clock.js';
import type { Config } from '../config/load.js';
import { AppError, assertThat } from '../errors.js';
import { createRouter } from '../http/router.js';
import { authenticatorName, isCredentialId } from '../auth/passkeys.js';
import { hasAnyFactor, type Enrolled } from '../auth/sign-in-policy.js';
import { checkNewPassword, hashPassword } from '../auth/password.js';
import { readForm } from '../http/body.js';
import type { Csrf } from '../http/csrf.js';
import { renderPage, siteNameOf } from '../http/views.js';
import { recoveryCodesView, totpSetupView } from '../http/factor-views.js';
import type { Logger } from '../log.js';
import { ACCOUNT_CLIENT_ID } from '../oidc/provider.js';
import type { Services } from '../services.js';
import { epochSeconds } from '../clock.js';
import { requestFacts } from '../http/request-facts.js';
import type { AuditEvent } from '../auth/audit.js';
import type { AccountSession, AccountSessions } from './session.js';

export interface AccountDeps {
  provider: Provider;
  config: Config;
  csrf: Csrf;
  services: Services;
  accounts: AccountSessions;
  clock: Clock;
  log: Logger;
}

/** The events a user sees about their own account: new sign-ins and factor changes. */
const SHOWN_EVENTS: Record<string, string> = {
  sign_in: 'Signed in',
  lockout: 'Too many failed attempts: sign-in paused',
  factor_enrolled: 'Second factor added',
  factor_removed: 'Second factor removed',
  recovery_code_used: 'Recovery code used',
  recovery_codes_regenerated: 'New recovery codes created',
  password_changed: 'Password changed',
  cli_password_set: 'Password set by an administrator',
  cli_user_unlocked: 'Unlocked by an administrator',
  cli_signed_out: 'Signed out everywhere by an administrator',
  signed_out_elsewhere: 'Other sessions signed out',
};

const ALREADY_TOTP = 'An authenticator app is already set up. Remove it first to set up another.';

const date = (seconds: number | null) => (seconds ? new Date(seconds * 1000).toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : 'never');

export function createAccountRoutes(deps: AccountDeps): Router {
  const { config, csrf, services, accounts, clock } = deps;
  const router = createRouter();
  const secure = config.issuer.startsWith('https:');
  const stateCookie = secure ? '__Host-idp_account' : 'idp_account';

  /** How the activity list names an app: its name, and the account pages as such (not their client id). */
  const appLabel = (clientId: string | null | undefined) => (!clientId ? ''
    : clientId === ACCOUNT_CLIENT_ID ? 'account page'
      : config.clients.find((c) => c.client_id === clientId)?.client_name ?? clientId);

  /** Apps whose policy a change must not silently break. */
  function policyConflict(after: Enrolled): string | undefined {
    const needing = config.clients.filter((c) => (c.mfa_policy === 'required' && !hasAnyFactor(after))
      || (c.mfa_policy === 'phishing-resistant' && after.passkeys === 0));
    if (needing.length === 0) return undefined;
    const names = needing.map((c) => c.client_name ?? c.client_id).join(', ');
    return `You could no longer sign in to ${names} without setting up a new factor there: add another factor first.`;
  }

  const audit = (ctx: Context, account: AccountSession, event: Omit<AuditEvent, 'userId' | 'outcome'> & { outcome?: AuditEvent['outcome'] }) =>
    services.audit.record({ outcome: 'success', userId: account.user.id, username: account.user.username, ...requestFacts(ctx, ACCOUNT_CLIENT_ID), ...event });

  /**
   * After a new password or a removed factor: whoever else holds a session or a token of this account
   * (a stolen device, a guessed password) loses it. This browser's session stays signed in, with the apps
   * signed in through it. Returns what to tell the user.
   */
  async function signOutElsewhere(ctx: Context, account: AccountSession): Promise<string> {
    const ended = await services.signOut.everywhere(account.user.id, account.kept);
    if (ended > 0) await audit(ctx, account, { type: 'signed_out_elsewhere', detail: { revoked: ended } });
    return ended > 0 ? ' Your other sessions and the apps signed in through them were signed out.' : '';
  }

  async function requireAccount(ctx: Context): Promise<AccountSession | undefined> {
    const account = await accounts.current(ctx);
    if (!account) {
      ctx.status = 303;
      ctx.redirect('/account/login');
      return undefined;
    }
    return account;
  }

  /** For changes: a recent sign-in with the strongest factor, or off to confirm it first. */
  async function requireRecent(ctx: Context): Promise<{ account: AccountSession; form: Record<string, string> } | undefined> {
    const form = await readForm(ctx);
    csrf.verify(ctx, form.csrf);
    const account = await requireAccount(ctx);
    if (!account) return undefined;
    if (!account.recent) {
      ctx.status = 303;
      ctx.redirect('/account/login?reauth=1');
      return undefined;
    }
    return { account, form };
  }

  async function renderAccount(ctx: Context, account: AccountSession, extra: { message?: string; error?: string; removedCredential?: string } = {}, status = 200) {
    const passkeys = await services.passkeyQueries.listForUser(account.user.id);
    const events = (await services.audit.list({ userId: account.user.id, limit: 50 }))
      .filter((e) => SHOWN_EVENTS[e.type] && !(e.type === 'sign_in' && e.outcome !== 'success'))
      .slice(0, 10)
      .map((e) => ({ when: date(e.at), what: SHOWN_EVENTS[e.type]!, where: e.ip ?? '', app: appLabel(e.client_id) }));
    renderPage(ctx, 'account', {
      title: 'Your account',
      csrf: csrf.token(ctx),
      user: account.user,
      recent: account.recent,
      passkeys: passkeys.map((p) => ({
        id: p.id, name: p.name, authenticator: authenticatorName(p.aaguid) ?? (p.backup_eligible ? 'Synced passkey' : 'Security key or device'),
        synced: p.backup_eligible, created: date(p.created_at), lastUsed: date(p.last_used_at),
      })),
      totp: account.enrolled.totp,
      recoveryCodes: account.enrolled.recoveryCodes,
      // Only where the page offers new codes (views/account.eta): a read fewer for an account without factors.
      recoverySet: hasAnyFactor(account.enrolled) ? await services.recovery.currentSet(account.user.id) : 0,
      hasFactor: hasAnyFactor(account.enrolled),
      rpId: new URL(config.issuer).hostname,
      logoutUrl: `/session/end?client_id=${ACCOUNT_CLIENT_ID}`,
      events,
      ...extra,
    }, status);
  }

  router.get('/account', async (ctx) => {
    const account = await requireAccount(ctx);
    if (account) await renderAccount(ctx, account);
  });

  // Starts an authorization request of the account client (OIDC Core §3.1.2.1); `reauth` demands a fresh
  // sign-in (max_age=0) with the strongest factor the user has.
  router.get('/account/login', async (ctx) => {
    const state = randomBytes(24).toString('base64url');
    // Where to go after the sign-in, from a fixed list (no open redirect): the setup the user was going to
    // (an audit finding: confirming it was you landed on /account, the setup forgotten).
    const next = ctx.query.next === 'totp' ? 'totp' : '';
    ctx.cookies.set(stateCookie, next ? `${state}.${next}` : state, { httpOnly: true, sameSite: 'lax', secure, path: '/', maxAge: config.ttl.interaction * 1000 });
    const url = new URL('/auth', config.issuer);
    url.searchParams.set('client_id', ACCOUNT_CLIENT_ID);
    url.searchParams.set('redirect_uri', `${config.issuer}/account/callback`);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('scope', 'openid');
    url.searchParams.set('state', state);
    url.searchParams.set('code_challenge', createHash('sha256').update(randomBytes(32)).digest('base64url'));
    url.searchParams.set('code_challenge_method', 'S256');
    if (ctx.query.reauth) {
      const account = await accounts.current(ctx);
      url.searchParams.set('max_age', '0');
      if (account) url.searchParams.set('acr_values', account.strongest);
    }
    ctx.status = 303;
    ctx.redirect(url.toString());
  });

  // The sign-in itself updated the provider session; the code is not needed and simply expires.
  router.get('/account/callback', async (ctx) => {
    const [expected, next] = (ctx.cookies.get(stateCookie) ?? '').split('.');
    ctx.cookies.set(stateCookie, '', { httpOnly: true, sameSite: 'lax', secure, path: '/', maxAge: 0 });
    assertThat(expected && ctx.query.state === expected, () => new AppError('invalid_request', 'This sign-in response does not belong to this browser. Please try again.'));
    if (ctx.query.error) {
      throw new AppError('access_denied', 'Signing in to your account was not completed.', { status: 400 });
    }
    ctx.status = 303;
    ctx.redirect(next === 'totp' ? '/account/totp' : '/account');
  });

  // Anything that cannot be a credential id names no passkey (and a NUL would not even reach PostgreSQL:
  // SQLSTATE 22021).
  router.param('id', (id, ctx, next) => {
    assertThat(isCredentialId(id), () => new AppError('not_found', 'No such passkey.', { status: 404 }));
    return next();
  });

  router.post('/account/passkeys/:id/rename', async (ctx) => {
    const ok = await requireRecent(ctx);
    if (!ok) return;
    const name = (ok.form.name ?? '').trim().slice(0, 100);
    assertThat(name, () => new AppError('invalid_request', 'Give the passkey a name.'));
    assertThat(await services.passkeyQueries.rename(ok.account.user.id, ctx.params.id!, name), () => new AppError('not_found', 'No such passkey.', { status: 404 }));
    await audit(ctx, ok.account, { type: 'passkey_renamed', detail: { name } });
    ctx.status = 303;
    ctx.redirect('/account');
  });

  router.post('/account/passkeys/:id/delete', async (ctx) => {
    const ok = await requireRecent(ctx);
    if (!ok) return;
    const { account } = ok;
    const { result, conflict } = await services.removeFactor(account.user.id, { passkeyId: ctx.params.id! }, policyConflict);
    assertThat(result !== 'not_found', () => new AppError('not_found', 'No such passkey.', { status: 404 }));
    if (conflict) return renderAccount(ctx, account, { error: conflict }, 409);
    await audit(ctx, account, { type: 'factor_removed', detail: { factor: 'passkey' } });
    const ended = await signOutElsewhere(ctx, account);
    return renderAccount(ctx, await accounts.refreshed(account), { message: `Passkey removed.${ended}`, removedCredential: ctx.params.id });
  });

  router.get('/account/totp', async (ctx) => {
    const account = await requireAccount(ctx);
    if (!account) return;
    if (!account.recent) {
      ctx.status = 303;
      ctx.redirect('/account/login?reauth=1&next=totp');
      return;
    }
    if (account.enrolled.totp) return renderAccount(ctx, account, { error: ALREADY_TOTP }, 409);
    const enrollment = await services.totp.pendingEnrollment(account.user.id, account.user.email)
      ?? await services.totp.startEnrollment(account.user.id, account.user.email);
    renderPage(ctx, 'account-totp', {
      title: 'Set up an authenticator app', csrf: csrf.token(ctx),
      ...totpSetupView(enrollment),
    });
  });

  router.post('/account/totp', async (ctx) => {
    const ok = await requireRecent(ctx);
    if (!ok) return;
    const { account, form } = ok;
    if (account.enrolled.totp) return renderAccount(ctx, account, { error: ALREADY_TOTP }, 409);
    const confirmed = await services.throttle.check('otp', account.user.id, requestFacts(ctx, ACCOUNT_CLIENT_ID).ip,
      () => services.totp.confirmEnrollment(account.user.id, form.code ?? ''));
    if (!confirmed) {
      const enrollment = await services.totp.pendingEnrollment(account.user.id, account.user.email);
      if (!enrollment) return renderAccount(ctx, account, { error: 'That setup has expired. Start again.' }, 400);
      return renderPage(ctx, 'account-totp', {
        title: 'Set up an authenticator app', csrf: csrf.token(ctx), error: 'That did not work. Check the code and try again.',
        ...totpSetupView(enrollment),
      }, 400);
    }
    await audit(ctx, account, { type: 'factor_enrolled', detail: { factor: 'otp' } });
    // Recovery codes come with the first factor (issueFirst decides, as it stores them).
    const codes = await services.recovery.issueFirst(account.user.id);
    if (!codes) return renderAccount(ctx, await accounts.refreshed(account), { message: 'Authenticator app added.' });
    return renderPage(ctx, 'recovery-codes', {
      title: 'Save your recovery codes', csrf: csrf.token(ctx), continueUrl: '/account', ...recoveryCodesView(siteNameOf(ctx), account.user.username, codes),
    });
  });

  router.post('/account/totp/delete', async (ctx) => {
    const ok = await requireRecent(ctx);
    if (!ok) return;
    const { account } = ok;
    const { result, conflict } = await services.removeFactor(account.user.id, 'totp', policyConflict);
    assertThat(result !== 'not_found', () => new AppError('not_found', 'No authenticator app is set up.', { status: 404 }));
    if (conflict) return renderAccount(ctx, account, { error: conflict }, 409);
    await audit(ctx, account, { type: 'factor_removed', detail: { factor: 'otp' } });
    const ended = await signOutElsewhere(ctx, account);
    return renderAccount(ctx, await accounts.refreshed(account), { message: `Authenticator app removed.${ended}` });
  });

  router.post('/account/recovery-codes', async (ctx) => {
    const ok = await requireRecent(ctx);
    if (!ok) return;
    const { account } = ok;
    assertThat(hasAnyFactor(account.enrolled), () => new AppError('invalid_request', 'Recovery codes come with a passkey or an authenticator app: add one first.'));
    const replacing = /^\d{1,15}$/.test(ok.form.replaces ?? '') ? Number(ok.form.replaces) : -1;
    const codes = await services.recovery.regenerate(account.user.id, replacing);
    if (!codes) {
      return renderAccount(ctx, account, {
        error: 'New recovery codes were already created from this page (it was sent again) or from another window: the codes shown then are the ones that work. If you did not save them, create new ones now.',
      }, 409);
    }
    await audit(ctx, account, { type: 'recovery_codes_regenerated' });
    return renderPage(ctx, 'recovery-codes', {
      title: 'Save your recovery codes', csrf: csrf.token(ctx), continueUrl: '/account', ...recoveryCodesView(siteNameOf(ctx), account.user.username, codes),
    });
  });

  router.post('/account/password', async (ctx) => {
    const ok = await requireRecent(ctx);
    if (!ok) return;
    const { account, form } = ok;
    const password = form.new_password ?? '';
    if (password !== (form.confirm_password ?? '')) {
      return renderAccount(ctx, account, { error: 'The two new passwords differ.' }, 400);
    }
    try {
      checkNewPassword(password, config.password);
    } catch (err) {
      // The rule as the CLI words it ("password must be …"), as a sentence on the page.
      const rule = (err as AppError).message;
      return renderAccount(ctx, account, { error: `${rule.charAt(0).toUpperCase()}${rule.slice(1)}.` }, 400);
    }
    await services.users.update(account.user.id, { password_hash: await hashPassword(password, config.password), updated_at: epochSeconds(clock) });
    await audit(ctx, account, { type: 'password_changed' });
    const ended = await signOutElsewhere(ctx, account);
    return renderAccount(ctx, account, { message: `Password changed.${ended}` });
  });

  return router;
}
