/**
 * oidc-provider validates client metadata itself (RFC 7591 §2 rules, redirect URI schemes, …); run that
 * validation for every configured client at start-up so a bad client refuses to start, naming it.
 */
import type Provider from 'oidc-provider';
import type { Config } from '../config/load.js';

export async function validateClients(provider: Provider, config: Config): Promise<string[]> {
  const problems: string[] = [];
  for (const [i, client] of config.clients.entries()) {
    try {
      const found = await provider.Client.find(client.client_id);
      if (!found) problems.push(`clients[${i}]: client ${client.client_id} could not be loaded`);
    } catch (err) {
      const e = err as { error_description?: string; message?: string };
      problems.push(`clients[${i}]: ${e.error_description ?? e.message ?? String(err)}`);
    }
  }
  return problems;
}
