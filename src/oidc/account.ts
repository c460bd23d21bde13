/** oidc-provider's view of our users: `findAccount` and the claims each scope releases (OIDC Core §5.4). */
import type { Account, FindAccount } from 'oidc-provider';
import type { UserProfile, UserQueries } from '../queries/users.js';
import type { ReadAhead } from './read-ahead.js';

export function toAccount(user: UserProfile): Account {
  return {
    accountId: user.id,
    async claims() {
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
  return async (_ctx, sub) => {
    // Read with the token this request is about, when it read one (read-ahead.ts).
    const user = readAhead?.take<UserProfile>(`user:${sub}`) ?? await users.findById(sub);
    if (!user || user.disabled) return undefined;
    return toAccount(user);
  };
}
