/**
 * The audit trail: security events with who, what, from where and the outcome. Callers pass facts,
 * never secrets; `detail` holds small non-secret context (the factor, a passkey's name).
 */
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import type { Logger } from '../log.js';
import type { SecurityEventQueries } from '../queries/security-events.js';

export type EventType =
  | 'sign_in' | 'factor_verified' | 'lockout' | 'factor_enrolled' | 'factor_removed' | 'recovery_code_used'
  | 'recovery_codes_regenerated' | 'password_changed' | 'passkey_renamed'
  | 'cli_user_added' | 'cli_user_deleted' | 'cli_user_disabled' | 'cli_user_enabled' | 'cli_password_set' | 'cli_user_unlocked'
  | 'cli_signed_out' | 'cli_ip_unlocked' | 'signed_out_elsewhere'
  | 'secrets_rotated';

export interface RequestFacts {
  ip?: string;
  userAgent?: string;
  clientId?: string;
  /** The request's X-Request-Id, so the event's log line can be matched to the request's (logged only). */
  requestId?: string;
}

export interface AuditEvent extends RequestFacts {
  type: EventType;
  outcome: 'success' | 'failure' | 'refused';
  userId?: string;
  username?: string;
  detail?: Record<string, string | number | boolean>;
}

export function createAudit(deps: { events: SecurityEventQueries; clock: Clock; log: Logger; observe?: (event: AuditEvent) => void }) {
  const { events, clock, log } = deps;
  return {
    async record(event: AuditEvent): Promise<void> {
      const row = {
        at: epochSeconds(clock),
        type: event.type,
        outcome: event.outcome,
        user_id: event.userId ?? null,
        username: event.username ?? null,
        client_id: event.clientId?.slice(0, 255) ?? null,
        ip: event.ip?.slice(0, 64) ?? null,
        user_agent: event.userAgent?.slice(0, 300) ?? null,
        detail: event.detail ? JSON.stringify(event.detail) : null,
      };
      log.info(`security event: ${event.type}`, {
        ...event.detail, request_id: event.requestId, outcome: event.outcome, user_id: row.user_id, client_id: row.client_id, ip: row.ip,
      });
      deps.observe?.(event);
      await events.insert(row);
    },
    list: events.list,
    /** Forgets the events older than `retentionSeconds` (audit.retention_days); 0 keeps every one. */
    prune: (retentionSeconds: number): Promise<number> =>
      (retentionSeconds > 0 ? events.deleteBefore(epochSeconds(clock) - retentionSeconds) : Promise.resolve(0)),
  };
}

export type Audit = ReturnType<typeof createAudit>;
