/** oidc-provider's view of our users: `findAccount` and the claims each scope releases (OIDC Core §5.4). */
import type { Account, FindAccount } from 'oidc-provider';
import type { UserProfile, UserQueries } from '../queries/users.js';
import type { ReadAhead } from './read-ahead.js';

export function toAccount(user: UserProfile): Account {
  return {
    accountId: user.id,
    // Not async, nor findAccount when the user was read ahead: oidc-provider awaits either way, and an
    // async function costs promises (more with async hooks on).
    claims() {
      return {
        sub: user.id,
        name: user.name ?? user.username,
        preferred_username: user.username,
        email: user.email,
        email_verified: user.email_verified,
      };
    },
  };
}

/** A disabled or deleted user has no account: their sessions stop working and no token is issued. */
export function createFindAccount(users: UserQueries, readAhead?: ReadAhead): FindAccount {
  const account = (user: UserProfile | undefined) => (!user || user.disabled ? undefined : toAccount(user));
  return (_ctx, sub) => {
    // Read with the token this request is about, when it read one (read-ahead.ts).
    const kept = readAhead?.take<UserProfile>(`user:${sub}`);
    return kept ? account(kept) : users.findById(sub).then(account);
  };
}
