import type { Knex } from 'knex';

export async function up(db: Knex): Promise<void> {
  // WebAuthn credentials (passkeys). WebAuthn §6.1: counter, backup eligibility (BE) and state (BS).
  await db.schema.createTable('webauthn_credentials', (t) => {
    t.string('id', 1024).primary(); // credential ID, base64url
    t.string('user_id', 36).notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.text('public_key').notNullable(); // COSE key, base64url
    t.bigInteger('counter').notNullable().defaultTo(0);
    t.text('transports').notNullable().defaultTo('[]');
    t.string('aaguid', 36).notNullable();
    t.boolean('backup_eligible').notNullable();
    t.boolean('backed_up').notNullable();
    t.boolean('user_verified').notNullable().defaultTo(true);
    t.string('name', 100).notNullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('last_used_at');
    t.index(['user_id']);
  });

  // One TOTP authenticator per user; the secret is encrypted (AES-256-GCM), never stored in clear.
  await db.schema.createTable('totp_factors', (t) => {
    t.string('user_id', 36).primary().references('id').inTable('users').onDelete('CASCADE');
    t.text('secret_enc').notNullable();
    t.bigInteger('confirmed_at'); // null while enrollment awaits its first code
    t.bigInteger('last_used_step'); // RFC 6238 §5.2: a time step is accepted once
    t.bigInteger('created_at').notNullable();
  });

  // Recovery codes, stored only as keyed hashes; used_at makes each single-use.
  await db.schema.createTable('recovery_codes', (t) => {
    t.increments('id').primary();
    t.string('user_id', 36).notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.string('code_hash', 64).notNullable();
    t.bigInteger('used_at');
    t.bigInteger('created_at').notNullable();
    t.unique(['user_id', 'code_hash']);
  });

  // WebAuthn challenges: server-side, bound to a browser (cookie) and a user, single-use, short-lived.
  await db.schema.createTable('webauthn_challenges', (t) => {
    t.string('id', 64).primary(); // SHA-256 of the browser's challenge cookie
    t.string('purpose', 20).notNullable(); // authentication | registration
    t.string('challenge', 128).notNullable();
    t.string('user_id', 36);
    t.string('interaction_uid', 64);
    t.bigInteger('expires_at').notNullable();
    t.index(['expires_at']);
  });

  // A sign-in in progress: which user the browser has proven to be so far, and with which factors.
  await db.schema.createTable('sign_in_progress', (t) => {
    t.string('uid', 64).primary(); // oidc-provider interaction uid
    t.string('binding', 64).notNullable(); // SHA-256 of the browser's sign-in cookie
    t.string('user_id', 36).references('id').inTable('users').onDelete('CASCADE');
    t.text('factors').notNullable().defaultTo('[]');
    t.text('notice');
    t.bigInteger('expires_at').notNullable();
    t.index(['expires_at']);
  });
}

export async function down(db: Knex): Promise<void> {
  for (const table of ['sign_in_progress', 'webauthn_challenges', 'recovery_codes', 'totp_factors', 'webauthn_credentials']) {
    await db.schema.dropTable(table);
  }
}
