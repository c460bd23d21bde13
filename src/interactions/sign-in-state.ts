/**
 * Where a sign-in stands: the interaction's request, the browser's progress, the user, what the
 * request demands and the next step. Shared by the pages and the passkey JSON API.
 */
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { acrFor, amrFor } from '../auth/assurance.js';
import { withBinding, withoutBinding, type Progress } from '../auth/sign-in-progress.js';
import {
  acrRequest, demandedAcr, factorsFromAmr, nextStep, type Enrolled, type MfaPolicy, type Step,
} from '../auth/sign-in-policy.js';
import type { CookieJar } from '../http/cookies.js';
import type { UserRow } from '../queries/users.js';
import type { Services } from '../services.js';

export type Interaction = Awaited<ReturnType<Provider['interactionDetails']>>;

export interface SignInState {
  interaction: Interaction;
  progress: Progress;
  user: UserRow | undefined;
  clientName: string;
  enrolled: Enrolled;
  requested: string[];
  /** The request demands, as essential, only acr values we do not issue: it cannot be met. */
  unmetAcr: boolean;
  demand: string;
  step: Step;
  /** Seconds a sign-in stays open (the interaction lifetime). */
  interactionTtl: number;
}

const NOTHING: Enrolled = { passkeys: 0, deviceBoundPasskeys: 0, totp: false, recoveryCodes: 0 };

/** Reasons that mean "sign in again from the start" rather than "add what is missing". */
const FULL_SIGN_IN = ['no_session', 'login_prompt', 'max_age', 'id_token_hint', 'claims_id_token_sub_value', 'session_expired', 'account_gone'];

export function createSignInStates(deps: { provider: Provider; services: Services; cookies: CookieJar; clock: Clock; interactionTtl: number }) {
  const { provider, services, cookies, clock } = deps;

  /** The browser's bindings as this request last set them (or as it sent them). */
  const cookieOf = (ctx: Context): string | undefined => (ctx.state.signInCookie as string | undefined) ?? ctx.cookies.get(cookies.names.signIn);
  const setCookie = (ctx: Context, value: string) => {
    ctx.state.signInCookie = value;
    if (value) cookies.set(ctx, cookies.names.signIn, value, deps.interactionTtl * 1000);
    else cookies.clear(ctx, cookies.names.signIn);
  };
  /** Puts a sign-in's binding into the browser's cookie, beside those of its other sign-ins. */
  const bind = (ctx: Context, binding: string) => setCookie(ctx, withBinding(cookieOf(ctx), binding));

  /** Step-up: an existing session's factors count, so only what is missing is asked for. */
  async function seedFromSession(interaction: Interaction): Promise<{ userId?: string; factors?: Progress['factors'] }> {
    const session = interaction.session;
    if (!session?.accountId || interaction.prompt.reasons.some((r) => FULL_SIGN_IN.includes(r))) return {};
    const stored = session.uid ? await provider.Session.findByUid(session.uid) : undefined;
    const at = (stored as { loginTs?: number } | undefined)?.loginTs;
    // Without its login time the session's factors cannot be dated: sign in from the start.
    if (at === undefined) return {};
    return { userId: session.accountId, factors: factorsFromAmr(session.amr, at).map((f) => ({ ...f, carried: true })) };
  }

  /**
   * `known`: the user's row when the caller has just read it (saves reading it again). `freshFor`: see
   * nextStep (the finish of a factor's setup passes ENROLL_FINISH_SECONDS).
   */
  async function evaluate(interaction: Interaction, progress: Progress, known?: UserRow, freshFor?: number): Promise<SignInState> {
    const client = await provider.Client.find(String(interaction.params.client_id));
    const user = !progress.userId ? undefined
      : known?.id === progress.userId ? known : await services.users.findById(progress.userId);
    const usable = user && !user.disabled ? user : undefined;
    const enrolled = usable ? await services.enrolled(usable.id) : NOTHING;
    const { values: requested, unsupported: unmetAcr } = acrRequest(interaction.params);
    const demand = demandedAcr({ mfaPolicy: (client?.mfa_policy as MfaPolicy | undefined) ?? 'if-enrolled', enrolled, requested });
    const step: Step = usable ? nextStep({ demand, factors: progress.factors, enrolled, now: epochSeconds(clock), freshFor }) : { kind: 'first-factor' };
    return {
      interaction, progress, user: usable, clientName: client?.clientName ?? String(interaction.params.client_id),
      enrolled, requested, unmetAcr, demand, step, interactionTtl: deps.interactionTtl,
    };
  }

  return {
    /** For the pages: the browser's progress on this interaction, started (and bound by cookie) if new. */
    async forPage(ctx: Context, interaction: Interaction, freshFor?: number): Promise<SignInState> {
      let progress = await services.progress.get(cookieOf(ctx), interaction.uid);
      if (!progress) {
        const begun = await services.progress.begin(interaction.uid, await seedFromSession(interaction));
        bind(ctx, begun.cookie);
        progress = begun.progress;
      }
      return evaluate(interaction, progress, undefined, freshFor);
    },

    /**
     * For the JSON API, which has no interaction cookie: the progress our own cookie binds for the
     * interaction the page names (`?interaction=<uid>`; our pages always do), else the newest one.
     */
    async forApi(ctx: Context, freshFor?: number): Promise<SignInState | undefined> {
      // (A uid no binding can have simply finds none: progress.get matches only well-formed bindings.)
      const named = ctx.query.interaction;
      if (named !== undefined && typeof named !== 'string') return undefined;
      const progress = await services.progress.get(cookieOf(ctx), named);
      if (!progress) return undefined;
      const interaction = await provider.Interaction.find(progress.uid);
      if (!interaction) return undefined;
      // The check oidc-provider's interactionDetails makes for the pages: a sign-in begun from a session
      // lives only as long as that session, with its account (an audit finding: after "sign out", the
      // browser could still add a passkey to the signed-out account through an open enrollment step).
      const from = interaction.session as { uid?: string; accountId?: string } | undefined;
      if (from?.uid) {
        const session = await provider.Session.findByUid(from.uid);
        if (!session || session.accountId !== from.accountId) return undefined;
      }
      return evaluate(interaction as unknown as Interaction, progress, undefined, freshFor);
    },

    evaluate,

    /** Stores the progress under a new binding: the old value stops working (no fixation). */
    async save(ctx: Context, progress: Progress): Promise<void> {
      bind(ctx, await services.progress.save(progress));
    },

    /** A finished sign-in's binding leaves the cookie; the browser's other sign-ins keep theirs. */
    release(ctx: Context, uid: string): void {
      setCookie(ctx, withoutBinding(cookieOf(ctx), uid));
    },

    /**
     * The login result for oidc-provider: acr and amr say exactly what was verified. The login time
     * (auth_time) is when this sign-in finished its last factor; after a step-up, when the session it
     * started from signed in: the step-up adds a factor, but the others are as old as before, and the
     * newest time would pass every factor in amr off as recent (to max_age, to the account page's
     * re-authentication, and to the session's own age limit).
     */
    loginResult(state: SignInState) {
      const { factors } = state.progress;
      return {
        login: {
          accountId: state.user!.id,
          acr: acrFor(factors, state.requested),
          amr: amrFor(factors),
          ts: factors.some((f) => f.carried) ? Math.min(...factors.map((f) => f.at)) : Math.max(...factors.map((f) => f.at)),
          remember: true,
        },
      };
    },
  };
}

export type SignInStates = ReturnType<typeof createSignInStates>;
