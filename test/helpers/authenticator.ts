/**
 * A software WebAuthn authenticator: real P-256 keys, real authenticatorData and clientDataJSON, real
 * ES256 signatures (WebAuthn §6.1, §6.5, §7). Knobs let tests forge exactly one thing at a time.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isoCBOR } from '@simplewebauthn/server/helpers';
import type {
  AuthenticationResponseJSON, AuthenticatorTransport, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';

const FLAG = { UP: 0x01, UV: 0x04, BE: 0x08, BS: 0x10, AT: 0x40 };
const b64url = (bytes: Uint8Array | Buffer | string) => Buffer.from(bytes as Uint8Array).toString('base64url');
const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest();

export interface StoredCredential {
  id: Buffer;
  privateKey: KeyObject;
  rpId: string;
  userHandle: string;
  counter: number;
}

export interface Forgery {
  /** clientDataJSON.origin (a phishing site relaying the ceremony). */
  origin?: string;
  /** The RP ID whose hash goes into authenticatorData. */
  rpId?: string;
  /** clientDataJSON.type. */
  type?: string;
  /** Clear the user-verified flag. */
  noUserVerification?: boolean;
  /** Force the signature counter. */
  counter?: number;
  /** Answer with this credential instead of one the options allow. */
  credential?: StoredCredential;
  /** Sign over a different challenge. */
  challenge?: string;
  /** Length of a new credential's id, in bytes (32 otherwise). */
  idBytes?: number;
  /** What the browser reports as the new credential's transports. */
  transports?: unknown;
}

export class SoftAuthenticator {
  readonly credentials: StoredCredential[] = [];
  /** A fixed AAGUID; all zeros is what many platform authenticators send with attestation "none". */
  readonly aaguid = Buffer.alloc(16);

  constructor(readonly origin: string, readonly options: { backupEligible?: boolean } = {}) {}

  private flags(extra: number, forged: Forgery) {
    let flags = FLAG.UP | (forged.noUserVerification ? 0 : FLAG.UV) | extra;
    if (this.options.backupEligible) flags |= FLAG.BE | FLAG.BS;
    return flags;
  }

  private clientData(type: string, challenge: string, forged: Forgery): Buffer {
    return Buffer.from(JSON.stringify({ type: forged.type ?? type, challenge: forged.challenge ?? challenge, origin: forged.origin ?? this.origin, crossOrigin: false }));
  }

  create(options: PublicKeyCredentialCreationOptionsJSON, forged: Forgery = {}): RegistrationResponseJSON {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' });
    const cose = isoCBOR.encode(new Map<number, number | Uint8Array>([
      [1, 2], [3, -7], [-1, 1], [-2, Buffer.from(jwk.x!, 'base64url')], [-3, Buffer.from(jwk.y!, 'base64url')],
    ]));
    const id = randomBytes(forged.idBytes ?? 32);
    const rpId = options.rp.id!;
    const counter = forged.counter ?? 0;
    const authData = Buffer.concat([
      sha256(forged.rpId ?? rpId),
      Buffer.from([this.flags(FLAG.AT, forged)]),
      Buffer.from(new Uint32Array([counter]).buffer).reverse(),
      this.aaguid,
      Buffer.from([id.length >> 8, id.length & 0xff]),
      id,
      Buffer.from(cose),
    ]);
    const attestationObject = isoCBOR.encode(new Map<string, unknown>([
      ['fmt', 'none'], ['attStmt', new Map()], ['authData', new Uint8Array(authData)],
    ]) as never);
    this.credentials.push({ id, privateKey, rpId, userHandle: options.user.id, counter });
    return {
      id: b64url(id),
      rawId: b64url(id),
      type: 'public-key',
      response: {
        clientDataJSON: b64url(this.clientData('webauthn.create', options.challenge, forged)),
        attestationObject: b64url(attestationObject),
        transports: (forged.transports ?? ['internal']) as AuthenticatorTransport[],
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }

  get(options: PublicKeyCredentialRequestOptionsJSON, forged: Forgery = {}): AuthenticationResponseJSON {
    const allowed = options.allowCredentials ?? [];
    const credential = forged.credential ?? this.credentials.find((c) => c.rpId === options.rpId
      && (allowed.length === 0 || allowed.some((a) => a.id === b64url(c.id))));
    if (!credential) throw new Error('NotAllowedError: no matching credential on this authenticator');
    credential.counter = forged.counter ?? credential.counter + 1;
    const authData = Buffer.concat([
      sha256(forged.rpId ?? options.rpId!),
      Buffer.from([this.flags(0, forged)]),
      Buffer.from(new Uint32Array([credential.counter]).buffer).reverse(),
    ]);
    const clientDataJSON = this.clientData('webauthn.get', options.challenge, forged);
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), credential.privateKey);
    return {
      id: b64url(credential.id),
      rawId: b64url(credential.id),
      type: 'public-key',
      response: {
        clientDataJSON: b64url(clientDataJSON),
        authenticatorData: b64url(authData),
        signature: b64url(signature),
        userHandle: credential.userHandle,
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }
}
