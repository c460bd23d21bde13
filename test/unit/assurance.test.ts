/** What tokens say about a sign-in: acr and amr from the verified factors. */
import { describe, expect, it } from '@jest/globals';
import { ACR, acrFor, amrFor, satisfiedAcrs } from '../../src/auth/assurance.js';

const at = 1_800_000_000;

describe('assurance', () => {
  it('a password alone is one factor: sfa, amr pwd', () => {
    const factors = [{ method: 'pwd' as const, at }];
    expect(amrFor(factors)).toEqual(['pwd']);
    expect(acrFor(factors)).toBe(ACR.sfa);
    // Asking for more does not get more claimed.
    expect(acrFor(factors, [ACR.mfa])).toBe(ACR.sfa);
  });

  it('password + TOTP is mfa but not phishing-resistant', () => {
    const factors = [{ method: 'pwd' as const, at }, { method: 'otp' as const, at }];
    expect(amrFor(factors)).toEqual(['pwd', 'otp', 'mfa']);
    expect(satisfiedAcrs(factors)).toEqual([ACR.sfa, ACR.mfa]);
    expect(acrFor(factors, [ACR.phr])).toBe(ACR.mfa);
  });

  it('a synced user-verified passkey is phr; a device-bound one is phrh', () => {
    const synced = [{ method: 'passkey' as const, at, userVerified: true, backupEligible: true }];
    expect(amrFor(synced)).toEqual(['swk', 'user', 'mfa']);
    expect(acrFor(synced)).toBe(ACR.phr);
    const bound = [{ method: 'passkey' as const, at, userVerified: true, backupEligible: false }];
    expect(amrFor(bound)).toEqual(['hwk', 'user', 'mfa']);
    expect(acrFor(bound)).toBe(ACR.phrh);
    // The strongest requested value that is satisfied wins over the strongest achieved.
    expect(acrFor(bound, [ACR.mfa, ACR.sfa])).toBe(ACR.mfa);
  });

  it('a recovery code says so in amr', () => {
    expect(amrFor([{ method: 'pwd', at }, { method: 'recovery_code', at }])).toEqual(['pwd', 'recovery_code', 'mfa']);
  });

  it('nothing verified claims nothing', () => {
    expect(acrFor([])).toBeUndefined();
  });
});
