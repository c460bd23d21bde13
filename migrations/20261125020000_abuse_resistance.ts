import type { Knex } from 'knex';

export async function up(db: Knex): Promise<void> {
  // Attempt counters shared by every instance (NIST SP 800-63B §5.2.2 rate limiting).
  await db.schema.createTable('throttle', (t) => {
    t.string('key', 300).primary(); // e.g. acct:<user id>:otp, login:<name>:pwd, ip:<address>:<window>
    t.integer('failures').notNullable().defaultTo(0);
    t.bigInteger('blocked_until');
    t.bigInteger('updated_at').notNullable();
    t.index(['updated_at']);
  });

  // The audit trail of security events; never a secret in any column.
  await db.schema.createTable('security_events', (t) => {
    t.increments('id').primary();
    t.bigInteger('at').notNullable();
    t.string('type', 40).notNullable();
    t.string('outcome', 20).notNullable();
    t.string('user_id', 36);
    t.string('username', 64);
    t.string('client_id', 255);
    t.string('ip', 64);
    t.string('user_agent', 300);
    t.text('detail');
    t.index(['user_id', 'at']);
    t.index(['at']);
  });
}

export async function down(db: Knex): Promise<void> {
  await db.schema.dropTable('security_events');
  await db.schema.dropTable('throttle');
}
