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
  // RS256 is the one algorithm every relying party must support (OIDC Core §15.1); ES256 and EdDSA are
  // smaller and faster, for clients that ask for them (id_token_signed_response_alg).
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  const kid = () => randomBytes(12).toString('base64url');
  return [
    { ...rsa, kid: kid(), use: 'sig', alg: 'RS256' } as JWK,
    { ...ec, kid: kid(), use: 'sig', alg: 'ES256' } as JWK,
    { ...ed, kid: kid(), use: 'sig', alg: 'EdDSA' } as JWK,
  ];
}

export interface SigningKeySet {
  id: string;
  createdAt: number;
  keys: JWK[];
  /** active: signs new tokens; published: only verifies what it signed; retired: gone from the JWKS. */
  status: 'active' | 'published' | 'retired';
  /** When a published set leaves the JWKS. */
  retiresAt?: number;
}

/**
 * Signing key sets, newest first. The newest signs; an older one stays in the JWKS until every token it
 * can have signed has expired (`replacedKeyLifetime` after its successor took over, which counts the
 * instances that sign with it until they reload), then retires.
 */
export async function signingKeySets(db: Db, nowSeconds: number, replacedKeyLifetime: number): Promise<SigningKeySet[]> {
  const rows = await createKeystoreQueries(db).list('signing');
  return rows.map((row, i) => {
    const keys = JSON.parse(row.material) as JWK[];
    if (i === 0) return { id: row.id, createdAt: row.created_at, keys, status: 'active' as const };
    const retiresAt = rows[i - 1]!.created_at + replacedKeyLifetime;
    return { id: row.id, createdAt: row.created_at, keys, status: retiresAt > nowSeconds ? 'published' as const : 'retired' as const, retiresAt };
  });
}

/** Makes a new key set active now. `id` makes concurrent automatic rotations converge on one set. */
export async function rotateSigningKeys(db: Db, clock: Clock, id = `signing-${epochSeconds(clock)}-${randomBytes(4).toString('hex')}`): Promise<string> {
  const keystore = createKeystoreQueries(db);
  const [newest] = await keystore.list('signing');
  // Strictly newer than the current set, so "newest first" never ties.
  const createdAt = Math.max(epochSeconds(clock), (newest?.created_at ?? 0) + 1);
  await keystore.insertIfAbsent({ id, kind: 'signing', material: JSON.stringify(newSigningKeys()), created_at: createdAt });
  return id;
}

/**
 * How long a replaced key must stay published after the rotation: an instance goes on signing with it
 * until its next reload (up to `keys.reload_seconds` later), and a token signed then lives for the longest
 * token lifetime; plus a minute of clock skew between instances and relying parties.
 */
export const replacedKeyLifetime = (config: { ttl: { id_token: number; access_token: number }; keys: { reload_seconds: number } }) =>
  config.keys.reload_seconds + Math.max(config.ttl.id_token, config.ttl.access_token) + 60;

export async function loadOrCreateKeys(db: Db, clock: Clock, replacedKeyLifetime = 0): Promise<ProviderKeys> {
  const keystore = createKeystoreQueries(db);
  if ((await keystore.list('signing')).length === 0) {
    // A fixed id: when two instances start at once, one insert wins and both read the winner back.
    await rotateSigningKeys(db, clock, 'signing-initial');
  }
  let cookie = await keystore.list('cookie');
  if (cookie.length === 0) {
    await keystore.insertIfAbsent({
      id: 'cookie-initial', kind: 'cookie', material: JSON.stringify([randomBytes(32).toString('base64url')]), created_at: epochSeconds(clock),
    });
    cookie = await keystore.list('cookie');
  }
  const sets = (await signingKeySets(db, epochSeconds(clock), replacedKeyLifetime)).filter((set) => set.status !== 'retired');
  return {
    // The active set first: oidc-provider signs with the first key of the requested algorithm.
    jwks: { keys: sets.flatMap((set) => set.keys) },
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
    throw new Error('the secret key (IDP_SECRET_KEY, IDP_SECRET_KEY_FILE or the data directory\'s secret.key, whichever is set first) does not match the key this database was set up with: refusing to start (stored secrets could not be read)');
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
