import type { Knex } from 'knex';

// E-mail addresses are stored in one Unicode form since this version (src/auth/users.ts normaliseEmail:
// the local part NFC, the domain NFKC, both lower case); earlier versions stored them as typed, lower
// case, so é could be one code point in one row and e + U+0301 in another, and the user could sign in
// only with the form they were created with. This brings the existing rows to that form. A row whose
// address would then equal another row's is left as it is (two users would look the same; an operator
// decides which one is whose): it still signs in as before, with the form it was created with. The
// normalisation is copied here, not imported, so that this migration keeps doing what it did.
const normalise = (email: string) => {
  const at = email.lastIndexOf('@');
  const [local, domain] = at < 0 ? [email, ''] : [email.slice(0, at), email.slice(at)];
  return local.normalize('NFC').toLowerCase().normalize('NFC') + domain.normalize('NFKC').toLowerCase().normalize('NFKC');
};

const PAGE = 1000;

export async function up(db: Knex): Promise<void> {
  for (let after = ''; ;) {
    const rows: Array<{ id: string; email: string }> = await db('users').select('id', 'email').where('id', '>', after).orderBy('id').limit(PAGE);
    if (rows.length === 0) return;
    for (const { id, email } of rows) {
      const normal = normalise(email);
      if (normal === email) continue;
      const taken = await db('users').first('id').where({ email: normal });
      if (!taken) await db('users').where({ id }).update({ email: normal });
    }
    after = rows[rows.length - 1]!.id;
  }
}

// Nothing to undo: the normalised addresses are valid in the earlier versions too.
export async function down(): Promise<void> {}
