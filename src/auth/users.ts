/** The account model: creating and changing users, and finding the one behind a sign-in attempt. */
import { randomUUID } from 'node:crypto';
import { AppError, assertThat } from '../errors.js';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import type { UserQueries, UserRow } from '../queries/users.js';
import { hashPassword, type PasswordPolicy, type PasswordVerifier } from './password.js';
import type { SignOut } from './sign-out.js';

const USERNAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
// Deliberately loose (RFC 5322 is not a regex); the mailbox owner is the real check. A local part of at
// most 64 octets (RFC 5321 §4.5.3.1.1), nothing invisible: no controls, format characters (zero-width
// space, soft hyphen, bidi controls), unassigned or private-use code points, no separators, which would let
// two addresses look the same.
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const INVISIBLE = /[\p{C}\p{Z}\p{Default_Ignorable_Code_Point}]/u;
const utf8Length = (text: string) => Buffer.byteLength(text, 'utf8');
const isEmail = (email: string) => EMAIL.test(email) && !INVISIBLE.test(email) && email.length <= 254
  && utf8Length(email.slice(0, email.lastIndexOf('@'))) <= 64;
// A display name: at most 200 characters (the column's), one line, no controls or bidi overrides.
const NAME_UNSAFE = /[\p{Cc}\p{Co}\p{Cn}\p{Zl}\p{Zp}\u202a-\u202e\u2066-\u2069]/u;

/**
 * One form for each identifier, so that two users cannot have names that compare differently but look the
 * same, and a user signs in whichever way the keyboard composed the name. Usernames: compatibility forms
 * folded (NFKC: fullwidth letters, the Kelvin sign), then lower case, as RFC 8265's UsernameCaseMapped
 * profile does; what is left must be ASCII (USERNAME). E-mail addresses: the local part composed (NFC, as
 * RFC 6532 §3.1 asks of internationalised addresses), the domain folded (NFKC) as IDNA's mapping does
 * (UTS #46), both lower case.
 */
export const normaliseUsername = (value: string) => value.normalize('NFKC').trim().toLowerCase();
export function normaliseEmail(value: string): string {
  const trimmed = value.trim();
  const at = trimmed.lastIndexOf('@');
  const [local, domain] = at < 0 ? [trimmed, ''] : [trimmed.slice(0, at), trimmed.slice(at)];
  return local.normalize('NFC').toLowerCase().normalize('NFC') + domain.normalize('NFKC').toLowerCase().normalize('NFKC');
}
/** A login as typed: an e-mail address if it has an @, else a username. */
export const normaliseLogin = (login: string) => (login.includes('@') ? normaliseEmail(login) : normaliseUsername(login));

export interface NewUser {
  username: string;
  email: string;
  name?: string;
  password: string;
}

export function createUserService(deps: { users: UserQueries; policy: PasswordPolicy; clock: Clock; signOut: SignOut }) {
  const { users, policy, clock, signOut } = deps;

  async function mustFind(username: string): Promise<UserRow> {
    const user = await users.findByUsername(normaliseUsername(username));
    assertThat(user, () => new AppError('not_found', `no user named ${normaliseUsername(username)}`, { status: 404 }));
    return user;
  }

  /**
   * The new user's identifiers normalised and checked, and found free: before a password is asked for, so
   * that no one types one twice to learn the username was taken. add() checks again, and its insert has
   * the last word (a concurrent add).
   */
  async function checkNew(input: Omit<NewUser, 'password'>): Promise<{ username: string; email: string; name: string | null }> {
    const username = normaliseUsername(input.username);
    const email = normaliseEmail(input.email);
    assertThat(USERNAME.test(username), () => new AppError('invalid_username',
      'username must be 1-64 characters: letters, digits, ".", "_" or "-", starting with a letter or digit'));
    assertThat(isEmail(email), () => new AppError('invalid_email', `not an e-mail address: ${JSON.stringify(email)}`));
    const name = input.name?.trim() || null;
    assertThat(name === null || ([...name].length <= 200 && !NAME_UNSAFE.test(name)),
      () => new AppError('invalid_name', 'the name must be one line of at most 200 characters, without control characters'));
    const taken = await users.existing(username, email);
    assertThat(!taken.username, () => new AppError('duplicate_username', `a user named ${username} already exists`, { status: 409 }));
    assertThat(!taken.email, () => new AppError('duplicate_email', `a user with e-mail ${email} already exists`, { status: 409 }));
    return { username, email, name };
  }

  return {
    checkNew,
    async add(input: NewUser): Promise<UserRow> {
      const { username, email, name } = await checkNew(input);
      const now = epochSeconds(clock);
      const user: UserRow = {
        id: randomUUID(),
        username,
        email,
        name,
        email_verified: false,
        password_hash: await hashPassword(input.password, policy),
        disabled: false,
        created_at: now,
        updated_at: now,
      };
      // False: a concurrent add won the race between the check and the insert.
      assertThat(await users.insert(user), () => new AppError('duplicate_user', `a user named ${username} or with e-mail ${email} already exists`, { status: 409 }));
      return user;
    },
    list: () => users.list(),
    find: mustFind,
    // An administrator's changes sign the user out everywhere (sign-out.ts): a password is reset, or an
    // account disabled, because someone else may be using it. Each returns how many sessions, grants and
    // tokens ended. The change comes first, so a sign-in finishing meanwhile meets it.
    async setPassword(username: string, password: string): Promise<number> {
      const user = await mustFind(username);
      await users.update(user.id, { password_hash: await hashPassword(password, policy), updated_at: epochSeconds(clock) });
      return signOut.everywhere(user.id);
    },
    async setDisabled(username: string, disabled: boolean): Promise<number> {
      const user = await mustFind(username);
      await users.update(user.id, { disabled, updated_at: epochSeconds(clock) });
      return disabled ? signOut.everywhere(user.id) : 0;
    },
    async remove(username: string): Promise<number> {
      const user = await mustFind(username);
      await users.update(user.id, { disabled: true, updated_at: epochSeconds(clock) });
      const ended = await signOut.everywhere(user.id);
      await users.delete(user.id);
      return ended;
    },
    /** Ends every session and revokes every grant and token of the user, changing nothing else. */
    async signOutEverywhere(username: string): Promise<number> {
      return signOut.everywhere((await mustFind(username)).id);
    },
  };
}

export type UserService = ReturnType<typeof createUserService>;

/**
 * First factor: finds the user behind `login` (username or e-mail) and checks the password. Unknown,
 * wrong and disabled all answer `user: undefined` after the same bcrypt work (no enumeration by timing).
 * `subject` names the throttle bucket: the login as typed (normalised), known or not; a login no user has
 * by its keyed hash (`hashLogin`), as people type their password into the login field too, and the
 * throttle's rows (and `idp throttle list`) must not keep it in clear.
 */
export async function findLoginUser(users: UserQueries, login: string, hashLogin: (normalised: string) => string):
Promise<{ user: UserRow | undefined; subject: string }> {
  const normalised = normaliseLogin(login);
  const user = normalised ? await users.findByLogin(normalised) : undefined;
  // The password's throttle counts per login as typed, known or not: keyed by the user, a lock reached
  // through the username also answered for the e-mail address, telling anyone which address is whose
  // (an audit finding). A user thus has one password count per alias (username, e-mail). Either way the
  // count works alike; only its row's name differs.
  return { user, subject: user ? `login:${normalised.slice(0, 254)}` : `unknown:${hashLogin(normalised.slice(0, 254))}` };
}

/**
 * The password's check. A match against a hash that should be made again (made at another cost than the
 * configured one, or of the password as typed before passwords were normalised) makes it again (OWASP
 * Password Storage Cheat Sheet, upgrading the work factor), so the user's checks cost what an unknown
 * login's cost; only if the stored hash is still the one checked (a password set meanwhile wins).
 */
export async function checkPassword(verifier: PasswordVerifier, users: UserQueries, user: UserRow | undefined, password: string, now: number): Promise<UserRow | undefined> {
  const { ok, rehash } = await verifier.check(password, user?.password_hash);
  if (!ok || !user || user.disabled) return undefined;
  if (rehash) await users.replacePasswordHash(user.id, user.password_hash!, await verifier.rehash(password), now);
  return user;
}
