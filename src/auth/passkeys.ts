/**
 * Passkeys (WebAuthn Level 3) with @simplewebauthn/server. The RP ID and the expected origin come from
 * the configured issuer, never from the request. Challenges live in the database, bound to the browser
 * (the hash of an HttpOnly cookie) and to the user, and are consumed by the statement that reads them.
 */
import { createHash } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type AuthenticatorTransport,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ChallengeQueries, ChallengeRow } from '../queries/challenges.js';
import type { PasskeyQueries, PasskeyRow } from '../queries/passkeys.js';
import type { UserRow } from '../queries/users.js';

export const CHALLENGE_TTL_SECONDS = 300;

/** WebAuthn L3 §7.1: the longest credential id a relying party should accept. */
const MAX_CREDENTIAL_ID_BYTES = 1023;
const CREDENTIAL_ID = new RegExp(`^[A-Za-z0-9_-]{1,${Math.ceil((MAX_CREDENTIAL_ID_BYTES * 4) / 3)}}$`);
/** Whether `id` can name a passkey we stored: base64url of 1 to MAX_CREDENTIAL_ID_BYTES bytes. */
export const isCredentialId = (id: string): boolean => CREDENTIAL_ID.test(id);
// AuthenticatorTransport (WebAuthn L3 §5.8.4). The browser reports them; we keep them only as hints for
// allowCredentials, so anything else (or anything that is not a short list of strings) is dropped.
const TRANSPORTS = new Set<string>(['ble', 'cable', 'hybrid', 'internal', 'nfc', 'smart-card', 'usb']);
const knownTransports = (reported: unknown): string[] => (Array.isArray(reported)
  ? [...new Set(reported.filter((t): t is string => typeof t === 'string' && TRANSPORTS.has(t)))]
  : []);

/** Authenticator names for well-known AAGUIDs (FIDO MDS / passkey-authenticator-aaguids). */
const AAGUID_NAMES: Record<string, string> = {
  'fbfc3007-154e-4ecc-8c0b-6e020557d7bd': 'iCloud Keychain',
  'ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4': 'Google Password Manager',
  'adce0002-35bc-c60a-648b-0b25f1f05503': 'Chrome on Mac',
  '08987058-cadc-4b81-b6e1-30de50dcbe96': 'Windows Hello',
  '9ddd1817-af5a-4672-a2b9-3e3dd95000a9': 'Windows Hello',
  '6028b017-b1d4-4c02-b4b3-afcdafc96bb2': 'Windows Hello',
  'bada5566-a7aa-401f-bd96-45619a55120d': '1Password',
  'd548826e-79b4-db40-a3d8-11116f7e8349': 'Bitwarden',
  '531126d6-e717-415c-9320-3d9aa6981239': 'Dashlane',
  'cb69481e-8ff7-4039-93ec-0a2729a154a8': 'YubiKey 5 Series',
  'ee882879-721c-4913-9775-3dfcce97072a': 'YubiKey 5 Series',
  'fa2b99dc-9e39-4257-8f92-4a30d23c4118': 'YubiKey 5 Series with NFC',
};

export const authenticatorName = (aaguid: string): string | undefined => AAGUID_NAMES[aaguid];

/** The database key of a browser's challenge: a hash, so a leaked table row cannot be replayed as a cookie. */
export const bindingOf = (cookieValue: string): string => createHash('sha256').update(cookieValue).digest('hex');

export interface VerifiedPasskey {
  userId: string;
  credentialId: string;
  userVerified: boolean;
  backupEligible: boolean;
}

export function createPasskeyService(deps: {
  passkeys: PasskeyQueries;
  challenges: ChallengeQueries;
  clock: Clock;
  issuer: string;
  rpName: string;
  log: Logger;
}) {
  const { passkeys, challenges, clock, log } = deps;
  const origin = new URL(deps.issuer).origin;
  const rpID = new URL(deps.issuer).hostname;
  const refused = (reason: string, fields: Record<string, unknown> = {}) => {
    // The user sees one generic message; the log says which check failed.
    log.info('passkey refused', { reason, ...fields });
    return new AppError('passkey_failed', 'The passkey could not be verified. Please try again.', { status: 400, reason });
  };

  /**
   * Every check of an assertion against the challenge it answers, but the ones that write (the
   * challenge's use, the counter): refuses with the reason, or gives the credential and what the
   * authenticator reported.
   */
  async function checkAssertion(response: AuthenticationResponseJSON, challenge: ChallengeRow, credential: PasskeyRow | undefined, now: number) {
    // Ensure the challenge is unexpired and the credential exists and belongs to the user this sign-in is for.
    if (challenge.expires_at <= now) throw refused('no live challenge for this browser');
    if (!credential) throw refused('unknown credential');
    if (challenge.user_id && credential.user_id !== challenge.user_id) {
      throw refused('credential of another user', { credential_user: credential.user_id, expected_user: challenge.user_id });
    }
    let verification;
    try {
      verification = await verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge.challenge,
        expectedOrigin: origin,
        expectedRPID: rpID,
        expectedType: 'webauthn.get',
        credential: {
          id: credential.id,
          publicKey: Buffer.from(credential.public_key, 'base64url'),
          counter: credential.counter,
          transports: credential.transports as AuthenticatorTransport[],
        },
        requireUserVerification: true,
      });
    } catch (err) {
      throw refused((err as Error).message);
    }
    if (!verification.verified) throw refused('signature not verified');
    // For discoverable credentials the user handle must name the credential's owner (WebAuthn §7.2 step 6).
    // And when the user was not identified before the ceremony (a usernameless sign-in), the handle must
    // be there at all.
    const handle = response.response.userHandle;
    if (!challenge.user_id && !handle) throw refused('no user handle in a usernameless sign-in');
    if (handle && Buffer.from(handle, 'base64url').toString('utf8') !== credential.user_id) {
      throw refused('user handle does not match the credential owner');
    }
    return { credential, info: verification.authenticationInfo };
  }

  return {
    rpID,
    origin,

    /** Request options for a known user (their credentials) or for usernameless sign-in (none listed). */
    async authenticationOptions(binding: string, user: { id: string } | undefined, interactionUid?: string):
    Promise<PublicKeyCredentialRequestOptionsJSON> {
      const creds = user ? await passkeys.listForUser(user.id) : [];
      const options = await generateAuthenticationOptions({
        rpID,
        allowCredentials: creds.map((c) => ({ id: c.id, transports: c.transports as AuthenticatorTransport[] })),
        userVerification: 'required',
        timeout: CHALLENGE_TTL_SECONDS * 1000,
      });
      await challenges.insert({
        id: binding, purpose: 'authentication', challenge: options.challenge, user_id: user?.id ?? null,
        interaction_uid: interactionUid ?? null, expires_at: epochSeconds(clock) + CHALLENGE_TTL_SECONDS,
      });
      return options;
    },

    /**
     * One success per challenge, and whatever the outcome, the challenge is gone when this returns. It is
     * read, not consumed, before the signature is checked; a verified assertion then consumes it in the
     * same commit as the counter's update (PasskeyQueries.useConsumingChallenge), one commit per sign-in
     * instead of two. Parallel requests carrying one challenge each get their signature checked (each
     * counted by the throttle), but only the one whose delete removed the challenge succeeds; a refused
     * one deletes it.
     */
    async verifyAuthentication(binding: string, response: AuthenticationResponseJSON):
    Promise<VerifiedPasskey & { interactionUid: string | null }> {
      const now = epochSeconds(clock);
      // The credential is looked up meanwhile (on PostgreSQL, on another pooled connection).
      const [challenge, found] = await Promise.all([
        challenges.find(binding, 'authentication'),
        typeof response?.id === 'string' ? passkeys.findById(response.id) : undefined,
      ]);
      if (!challenge) throw refused('no live challenge for this browser');
      let checked;
      try {
        checked = await checkAssertion(response, challenge, found, now);
      } catch (err) {
        // The refusal stands even if the delete fails (the database busy or gone): the user is told the
        // passkey failed, the audit says why, and the challenge expires by itself.
        await challenges.consume(binding, 'authentication', now, challenge.challenge)
          .catch((error: unknown) => log.warn('passkey challenge not deleted after a refusal', { error: (error as Error)?.message }));
        throw err;
      }
      const { credential, info } = checked;
      // Ensure this request used the challenge up, and the counter moved forward, atomically (a cloned
      // authenticator shows up as a regression).
      const { consumed, counted } = await passkeys.useConsumingChallenge(binding, challenge.challenge, credential.id, info.newCounter, info.credentialBackedUp, now);
      if (!consumed) throw refused('challenge used by another request');
      if (!counted) throw refused('signature counter did not increase', { credential: credential.id });
      return {
        userId: credential.user_id,
        credentialId: credential.id,
        userVerified: info.userVerified,
        backupEligible: info.credentialDeviceType === 'multiDevice',
        interactionUid: challenge.interaction_uid,
      };
    },

    /**
     * `securityKey`: the sign-in needs a passkey that is not synced (phrh), so the browser is told to
     * offer a security key first (WebAuthn L3 §5.4 hints). A hint, not an attachment: a platform
     * authenticator that keeps its key on the device counts too.
     */
    async registrationOptions(binding: string, user: UserRow, interactionUid?: string, opts: { securityKey?: boolean } = {}): Promise<PublicKeyCredentialCreationOptionsJSON> {
      const existing = await passkeys.listForUser(user.id);
      const options = await generateRegistrationOptions({
        rpName: deps.rpName,
        rpID,
        userName: user.username,
        userDisplayName: user.name ?? user.username,
        userID: new Uint8Array(Buffer.from(user.id, 'utf8')),
        attestationType: 'none',
        excludeCredentials: existing.map((c) => ({ id: c.id, transports: c.transports as AuthenticatorTransport[] })),
        authenticatorSelection: { residentKey: 'preferred', userVerification: 'required' },
        timeout: CHALLENGE_TTL_SECONDS * 1000,
      });
      if (opts.securityKey) options.hints = ['security-key'];
      await challenges.insert({
        id: binding, purpose: 'registration', challenge: options.challenge, user_id: user.id,
        interaction_uid: interactionUid ?? null, expires_at: epochSeconds(clock) + CHALLENGE_TTL_SECONDS,
      });
      return options;
    },

    async verifyRegistration(binding: string, userId: string, response: RegistrationResponseJSON, name?: string): Promise<PasskeyRow> {
      const challenge = await challenges.consume(binding, 'registration', epochSeconds(clock));
      if (!challenge || challenge.user_id !== userId) throw refused('no live registration challenge for this browser and user');
      let verification;
      try {
        verification = await verifyRegistrationResponse({
          response,
          expectedChallenge: challenge.challenge,
          expectedOrigin: origin,
          expectedRPID: rpID,
          expectedType: 'webauthn.create',
          requireUserVerification: true,
        });
      } catch (err) {
        throw refused((err as Error).message);
      }
      if (!verification.verified || !verification.registrationInfo) throw refused('registration not verified');
      const info = verification.registrationInfo;
      // WebAuthn L3 §7.1 (registering a new credential): credential ids over 1023 bytes SHOULD fail.
      const idBytes = Buffer.from(info.credential.id, 'base64url').length;
      if (idBytes > MAX_CREDENTIAL_ID_BYTES) throw refused('credential id longer than 1023 bytes', { bytes: idBytes });
      if (await passkeys.findById(info.credential.id)) throw refused('credential already registered');
      const label = (name ?? '').trim().slice(0, 100) || authenticatorName(info.aaguid) || 'Passkey';
      const row: PasskeyRow = {
        id: info.credential.id,
        user_id: userId,
        public_key: Buffer.from(info.credential.publicKey).toString('base64url'),
        counter: info.credential.counter,
        transports: knownTransports(info.credential.transports ?? response.response.transports),
        aaguid: info.aaguid,
        backup_eligible: info.credentialDeviceType === 'multiDevice',
        backed_up: info.credentialBackedUp,
        user_verified: info.userVerified,
        name: label,
        created_at: epochSeconds(clock),
        last_used_at: null,
      };
      // The check above and this insert are two statements: the same credential registered twice at once
      // (one "none" attestation answers any challenge: it signs nothing) meets the primary key here.
      if (!(await passkeys.insertNew(row))) throw refused('credential already registered');
      return row;
    },
  };
}

export type PasskeyService = ReturnType<typeof createPasskeyService>;
