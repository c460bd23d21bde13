/**
 * The router of our pages and APIs. It knows every method Node parses, so a method a path does not serve
 * (TRACE, PROPFIND, …) gets 405 with the path's Allow header (RFC 9110 §15.5.6), and one on a path no
 * route has falls through to a 404, as on the library's endpoints. With @koa/router's default list
 * (GET, POST, …) any other method got 501, a server error, for what is the client's request.
 */
import { METHODS } from 'node:http';
import Router from '@koa/router';

export const createRouter = () => new Router({ methods: [...METHODS] });
