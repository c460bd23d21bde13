/**
 * Secrets at rest: AES-256-GCM under the instance's secret key (IDP_SECRET_KEY, IDP_SECRET_KEY_FILE, or a
 * key generated into $IDP_DATA_DIR on the embedded default). Sub-keys are derived with HKDF so one key
 * never serves two purposes. A wrong key fails loudly: GCM authentication refuses to decrypt.
 */

/**
 * A keyed hash (HMAC-SHA-256) for values that are only ever compared, like recovery codes. Its key (the
 * "pepper") is random and stored encrypted under the secret key, so rotating the secret key re-wraps the
 * pepper instead of invalidating every recovery code.
 */
export function createKeyedHash(pepper: Buffer) {
  return (value: string): string => createHmac('sha256', pepper).update(value).digest('hex');
}

export type KeyedHash = ReturnType<typeof createKeyedHash>;
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';

const VERSION = 'v1';

export function createSecretBox(masterKey: Buffer) {
  if (masterKey.length !== 32) throw new Error('the secret key must be 32 bytes');
  const derive = (purpose: string) => Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), `wrnexus-sso ${purpose}`, 32));
  const encKey = derive('encryption v1');

  return {
    encrypt(plain: string, context: string): string {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', encKey, iv);
      // The context (e.g. the user id) is authenticated, so a ciphertext cannot be moved to another row.
      cipher.setAAD(Buffer.from(context));
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
      return `${VERSION}.${iv.toString('base64url')}.${body.toString('base64url')}`;
    },
    decrypt(sealed: string, context: string): string {
      const [version, ivText, bodyText] = sealed.split('.');
      try {
        if (version !== VERSION || !ivText || !bodyText) throw new Error('unknown format');
        const body = Buffer.from(bodyText, 'base64url');
        const decipher = createDecipheriv('aes-256-gcm', encKey, Buffer.from(ivText, 'base64url'));
        decipher.setAAD(Buffer.from(context));
        decipher.setAuthTag(body.subarray(body.length - 16));
        return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString('utf8');
      } catch (cause) {
        throw new AppError('secret_key_mismatch', 'a stored secret cannot be decrypted: is IDP_SECRET_KEY the key it was written with?', {
          status: 500, expose: false, cause,
        });
      }
    },
    /** Identifies the key without revealing it, to detect instances started with different keys. */
    fingerprint(): string {
      return createHmac('sha256', derive('fingerprint v1')).update('wrnexus-sso').digest('hex').slice(0, 32);
    },
  };
}

export type SecretBox = ReturnType<typeof createSecretBox>;
