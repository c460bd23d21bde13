/**
 * TOTP (RFC 6238): SHA-1, 6 digits, 30-second steps, ±1 step of clock drift. A time step is accepted once
 * per user (RFC 6238 §5.2), enforced by the database in the statement that records it.
 */
import { generateSecret, generateURI, verify } from 'otplib';
import QRCode from 'qrcode';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import type { TotpQueries } from '../queries/totp.js';
import type { SecretBox } from './secret-box.js';

const CODE = /^\d{6}$/;

export interface TotpEnrollment {
  secret: string;
  uri: string;
  qrSvg: string;
}

export function createTotpService(deps: { totp: TotpQueries; box: SecretBox; clock: Clock; issuerName: string }) {
  const { totp, box, clock, issuerName } = deps;

  /** The time step `code` belongs to for this secret, or undefined. */
  async function matchStep(secret: string, code: string): Promise<number | undefined> {
    const token = code.replace(/\s+/g, '');
    if (!CODE.test(token)) return undefined;
    const result = await verify({ secret, token, epoch: epochSeconds(clock), epochTolerance: 30 });
    // otplib reports the matched RFC 6238 time step T as `timeStep`.
    return result.valid ? (result as unknown as { timeStep: number }).timeStep : undefined;
  }

  return {
    /** A new secret, stored encrypted and unconfirmed until the user proves it with a code. */
    async startEnrollment(userId: string, label: string): Promise<TotpEnrollment> {
      const secret = generateSecret();
      await totp.upsertPending(userId, box.encrypt(secret, `totp:${userId}`), epochSeconds(clock));
      const uri = generateURI({ issuer: issuerName, label, secret });
      const qrSvg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
      return { secret, uri, qrSvg };
    },
    /**
     * The pending enrollment's details again (for re-rendering the page), if there is one (begun at or
     * after `since`, epoch seconds, when given).
     */
    async pendingEnrollment(userId: string, label: string, since?: number): Promise<TotpEnrollment | undefined> {
      const row = await totp.find(userId);
      if (!row || row.confirmed_at || (since !== undefined && row.created_at < since)) return undefined;
      const secret = box.decrypt(row.secret_enc, `totp:${userId}`);
      const uri = generateURI({ issuer: issuerName, label, secret });
      return { secret, uri, qrSvg: await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 }) };
    },
    /** Confirms the pending enrollment (begun at or after `since`, when given) with a code from it. */
    async confirmEnrollment(userId: string, code: string, since?: number): Promise<boolean> {
      const row = await totp.find(userId);
      if (!row || row.confirmed_at || (since !== undefined && row.created_at < since)) return false;
      const step = await matchStep(box.decrypt(row.secret_enc, `totp:${userId}`), code);
      return step !== undefined && totp.claimStep(userId, step, { at: epochSeconds(clock), secretEnc: row.secret_enc });
    },
    async verify(userId: string, code: string): Promise<boolean> {
      const row = await totp.find(userId);
      if (!row?.confirmed_at) return false;
      const step = await matchStep(box.decrypt(row.secret_enc, `totp:${userId}`), code);
      return step !== undefined && totp.claimStep(userId, step);
    },
  };
}

export type TotpService = ReturnType<typeof createTotpService>;
