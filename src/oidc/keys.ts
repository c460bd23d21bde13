/**
 * Signing keys (JWKS) and cookie-signing keys are generated on the first start and kept in the database,
 * so every instance on one database signs and verifies alike. The library's development keys are never used.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { JWK } from 'oidc-provider';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { createKeystoreQueries } from '../queries/keystore.js';
import { createTotpQueries } from '../queries/totp.js';
import type { SecretBox } from '../auth/secret-box.js';
import type { Db } from '../db/connect.js';

export interface ProviderKeys {
  jwks: { keys: JWK[] };
  cookieKeys: string[];
}

function newSigningKeys(): JWK[] {
  // RS256 is the one algorithm every relying party must support (OIDC Core §15.1); ES256 is smaller and faster.
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const kid = () => randomBytes(12).toString('base64url');
  return [
    { ...rsa, kid: kid(), use: 'sig', alg: 'RS256' } as JWK,
    { ...ec, kid: kid(), use: 'sig', alg: 'ES256' } as JWK,
  ];
}

export async function loadOrCreateKeys(db: Db, clock: Clock): Promise<ProviderKeys> {
  const keystore = createKeystoreQueries(db);
  let signing = await keystore.list('signing');
  let cookie = await keystore.list('cookie');
  if (signing.length === 0) {
    // A fixed id: when two instances start at once, one insert wins and both read the winner back.
    await keystore.insertIfAbsent({
      id: 'signing-initial', kind: 'signing', material: JSON.stringify(newSigningKeys()), created_at: epochSeconds(clock),
    });
    signing = await keystore.list('signing');
  }
  if (cookie.length === 0) {
    await keystore.insertIfAbsent({
      id: 'cookie-initial', kind: 'cookie', material: JSON.stringify([randomBytes(32).toString('base64url')]), created_at: epochSeconds(clock),
    });
    cookie = await keystore.list('cookie');
  }
  return {
    jwks: { keys: signing.flatMap((row) => JSON.parse(row.material) as JWK[]) },
    cookieKeys: cookie.flatMap((row) => JSON.parse(row.material) as string[]),
  };
}

/**
 * Every instance must encrypt with the same secret key: the first start records the key's fingerprint,
 * and an instance started with another key refuses to start instead of failing to read secrets later.
 */
export async function checkSecretKeyFingerprint(db: Db, clock: Clock, fingerprint: string): Promise<void> {
  const keystore = createKeystoreQueries(db);
  await keystore.insertIfAbsent({ id: 'secret-key-check', kind: 'secret-check', material: fingerprint, created_at: epochSeconds(clock) });
  const [recorded] = await keystore.list('secret-check');
  if (recorded && recorded.material !== fingerprint) {
    throw new Error('IDP_SECRET_KEY does not match the key this database was set up with: refusing to start (stored secrets could not be read)');
  }
}

const PEPPER_ID = 'recovery-pepper';

/** The recovery-code hashing key: random, created once, stored encrypted under the secret key. */
export async function loadOrCreatePepper(db: Db, clock: Clock, box: SecretBox): Promise<Buffer> {
  const keystore = createKeystoreQueries(db);
  await keystore.insertIfAbsent({
    id: PEPPER_ID, kind: 'wrapped', material: box.encrypt(randomBytes(32).toString('base64'), PEPPER_ID), created_at: epochSeconds(clock),
  });
  const row = await keystore.find(PEPPER_ID);
  return Buffer.from(box.decrypt(row!.material, PEPPER_ID), 'base64');
}

/**
 * Re-encrypts every secret stored under `from` with `to` in one transaction: TOTP secrets, the
 * recovery-code pepper, and the key fingerprint. Either all of it moves to the new key or none does.
 */
export async function rotateSecretKey(db: Db, from: SecretBox, to: SecretBox): Promise<{ totpSecrets: number }> {
  return db.transaction(async (trx) => {
    const keystore = createKeystoreQueries(trx);
    const recorded = await keystore.find('secret-key-check');
    if (recorded && recorded.material !== from.fingerprint()) {
      throw new Error('the current secret key is not the one this database was set up with');
    }
    const totp = createTotpQueries(trx);
    const secrets = await totp.listSecrets();
    for (const row of secrets) {
      const context = `totp:${row.user_id}`;
      await totp.updateSecret(row.user_id, to.encrypt(from.decrypt(row.secret_enc, context), context));
    }
    const pepper = await keystore.find(PEPPER_ID);
    if (pepper) await keystore.updateMaterial(PEPPER_ID, to.encrypt(from.decrypt(pepper.material, PEPPER_ID), PEPPER_ID));
    if (recorded) await keystore.updateMaterial('secret-key-check', to.fingerprint());
    return { totpSecrets: secrets.length };
  });
}
