/**
 * A minimal browser for driving the hosted pages without JavaScript: a cookie jar (path-aware), manual
 * redirects, and form extraction. Requests leave the IdP's origin only on paper: following stops at the
 * first redirect to another origin (the relying party's redirect_uri) and returns it.
 */

import { request as httpRequest } from 'node:http';

/** One HTTP request with node:http (fetch may not set Host, which a load balancer passes through). */
function send(url: URL, host: string, method: string, headers: Record<string, string>, body?: string):
Promise<{ status: number; headers: Headers; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: { ...headers, host } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const out = new Headers();
        for (let i = 0; i < res.rawHeaders.length; i += 2) out.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
        resolve({ status: res.statusCode ?? 0, headers: out, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A GET with exactly these headers, Host included (which fetch and the Browser do not let one forge). */
export function rawGet(base: string, pathAndQuery: string, headers: Record<string, string>): Promise<{ status: number; body: string; location?: string }> {
  const target = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: target.hostname, port: target.port, path: pathAndQuery, method: 'GET', headers: { host: target.host, ...headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, location: res.headers.location }));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Cookie { name: string; value: string; path: string }

export interface Page {
  status: number;
  url: string;
  headers: Headers;
  body: string;
}

export class Browser {
  private cookies: Cookie[] = [];
  /** Sent with every request (e.g. X-Forwarded-For through a trusted proxy). */
  headers: Record<string, string> = {};

  /**
   * `route` picks the server a request really goes to (as a load balancer would); the browser keeps
   * talking about `origin`.
   */
  constructor(readonly origin: string, public route: (url: URL) => URL = (url) => url) {}

  private cookieHeader(url: URL): string {
    return this.cookies
      .filter((c) => url.pathname === c.path || url.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/')
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  private store(url: URL, headers: Headers): void {
    for (const line of headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      let cookiePath = url.pathname.replace(/\/[^/]*$/, '') || '/';
      let expired = value === '';
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=');
        if (k!.toLowerCase() === 'path') cookiePath = v;
        if (k!.toLowerCase() === 'expires' && new Date(v).getTime() < Date.now()) expired = true;
        if (k!.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
      }
      this.cookies = this.cookies.filter((c) => !(c.name === name && c.path === cookiePath));
      if (!expired) this.cookies.push({ name, value, path: cookiePath });
    }
  }

  cookieNames(): string[] { return this.cookies.map((c) => c.name); }

  cookie(name: string): string | undefined { return this.cookies.find((c) => c.name === name)?.value; }

  setCookie(name: string, value: string, path = '/'): void {
    this.cookies = this.cookies.filter((c) => !(c.name === name && c.path === path));
    this.cookies.push({ name, value, path });
  }

  /** A same-origin JSON API call, as our pages' JavaScript makes it (Origin header included). */
  async api<T = Record<string, unknown>>(method: 'GET' | 'POST', url: string, body?: unknown, headers: Record<string, string> = {}):
  Promise<{ status: number; body: T; headers: Headers }> {
    const page = await this.request(url, {
      method,
      json: body,
      headers: { accept: 'application/json', origin: new URL(this.origin).origin, 'sec-fetch-site': 'same-origin', ...headers },
    });
    return { status: page.status, body: JSON.parse(page.body || 'null') as T, headers: page.headers };
  }

  async request(url: string, init: { method?: string; form?: Record<string, string>; json?: unknown; body?: string; headers?: Record<string, string> } = {}): Promise<Page> {
    const target = new URL(url, this.origin);
    const headers: Record<string, string> = { accept: 'text/html', ...this.headers, ...init.headers };
    const cookie = this.cookieHeader(target);
    if (cookie) headers.cookie = cookie;
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    } else if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    } else if (init.body !== undefined) {
      body = init.body; // as is, with the caller's content-type
    }
    const res = await send(this.route(target), target.host, init.method ?? (init.form ? 'POST' : 'GET'), headers, body);
    this.store(target, res.headers);
    return { ...res, url: target.toString() };
  }

  /** Follows redirects within the IdP; stops at a page, or at a redirect that leaves the IdP. */
  async follow(first: Page): Promise<Page> {
    let page = first;
    for (let hops = 0; hops < 20; hops += 1) {
      const location = page.headers.get('location');
      if (page.status < 300 || page.status >= 400 || !location) return page;
      const next = new URL(location, page.url);
      if (next.origin !== new URL(this.origin).origin) return page;
      page = await this.request(next.toString());
    }
    throw new Error('too many redirects');
  }

  async get(url: string): Promise<Page> { return this.follow(await this.request(url)); }

  async submit(page: Page, action: RegExp | string, fields: Record<string, string>): Promise<Page> {
    const form = findForm(page.body, action);
    return this.follow(await this.request(new URL(form.action, page.url).toString(), { form: { ...form.fields, ...fields } }));
  }
}

/** The first form whose action matches, with its hidden fields. */
export function findForm(html: string, action: RegExp | string): { action: string; fields: Record<string, string> } {
  const forms = [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)];
  for (const [, attrs, inner] of forms) {
    const act = /action="([^"]*)"/.exec(attrs!)?.[1]?.replace(/&amp;/g, '&') ?? '';
    if (typeof action === 'string' ? act.includes(action) : action.test(act)) {
      const fields: Record<string, string> = {};
      for (const [, input] of inner!.matchAll(/<input\b([^>]*)>/g)) {
        if (!/type="hidden"/.test(input!)) continue;
        const name = /name="([^"]*)"/.exec(input!)?.[1];
        const value = /value="([^"]*)"/.exec(input!)?.[1] ?? '';
        if (name) fields[name] = value.replace(/&amp;/g, '&').replace(/&#39;/g, "'").replace(/&quot;/g, '"');
      }
      return { action: act, fields };
    }
  }
  throw new Error(`no form with action ${String(action)} in page:\n${html.slice(0, 2000)}`);
}

/** What a person reads on the page: the text without tags and attributes (tokens and nonces are random). */
export const visibleText = (page: Page): string => page.body.replace(/<script[\s\S]*?<\/script>/g, ' ').replace(/<[^>]+>/g, ' ');
