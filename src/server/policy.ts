// Which requests the server answers at all, before any route or key: the Host header (DNS rebinding) and the
// browser origin (cross-site requests), as Ollama does. Also the CORS headers for origins `--cors` allows.
// Node-only. Not authentication (that is --api-key) and not the routes.
import { BlockList, isIP } from "node:net";

export interface PolicyOptions {
  /** the address the server binds (--host) */
  bindHost: string;
  /** origins allowed to call from a web page (--cors): exact origins such as "http://localhost:3000", or "*" */
  cors?: readonly string[];
}

/** A refusal: status and an OpenAI-style message. */
export interface Refusal {
  status: number;
  message: string;
  code: string;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");
LOOPBACK.addSubnet("::ffff:127.0.0.0", 104, "ipv6");

/** "localhost", a name under .localhost (RFC 6761: resolves to loopback), or a loopback IP. */
export function isLoopbackName(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, "");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  const bare = h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h;
  const family = isIP(bare);
  return family !== 0 && LOOPBACK.check(bare, family === 4 ? "ipv4" : "ipv6");
}

/** The host part of a Host header ("127.0.0.1:8080" → "127.0.0.1", "[::1]:8080" → "::1"); undefined if malformed. */
export function hostOfHeader(header: string): string | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/\s@]+)(?::(\d{1,5}))?$/.exec(header.trim());
  if (!m) return undefined;
  return m[1].startsWith("[") ? m[1].slice(1, -1) : m[1];
}

/** "--cors a,b" → the origins, normalised as browsers send them (scheme://host[:port], lower case, no slash). */
export function parseCorsList(value: string): string[] {
  const out: string[] = [];
  for (const raw of value.split(",").map((s) => s.trim()).filter(Boolean)) {
    if (raw === "*" || raw === "null") { out.push(raw); continue; }
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new Error(`--cors: "${raw}" is not an origin; expected scheme://host[:port] (e.g. http://localhost:3000), "null" or "*"`);
    }
    if (u.origin === "null" || u.pathname !== "/" || u.search || u.hash || u.username || u.password) {
      throw new Error(`--cors: "${raw}" is not an origin (no path, query or user): did you mean ${u.origin}?`);
    }
    out.push(u.origin);
  }
  if (out.length === 0) throw new Error("--cors needs at least one origin, or *");
  return out;
}

export class RequestPolicy {
  /** bound to a non-loopback address: every Host is accepted (the user chose to serve the network) */
  readonly anyHost: boolean;
  private readonly origins: ReadonlySet<string>;
  private readonly anyOrigin: boolean;

  constructor(o: PolicyOptions) {
    this.anyHost = !isLoopbackName(o.bindHost);
    this.origins = new Set(o.cors ?? []);
    this.anyOrigin = this.origins.has("*");
  }

  /** Why this request is refused, or undefined to serve it. */
  refusal(headers: { host?: string; origin?: string; "sec-fetch-site"?: string }): Refusal | undefined {
    const host = headers.host;
    // a request without Host (HTTP/1.0 tools) comes from no browser: browsers always send it
    if (host !== undefined && !this.anyHost) {
      const name = hostOfHeader(host);
      if (name === undefined || !isLoopbackName(name)) {
        return {
          status: 403, code: "host_not_allowed",
          message: `Host "${clip(host)}" is not a loopback name. This server is bound to a loopback address and answers only requests addressed to localhost or a loopback IP, so that a web page cannot reach it through a DNS name that resolves to 127.0.0.1. Start it with --host <address> to serve other names.`,
        };
      }
    }
    const origin = headers.origin;
    if (origin !== undefined) {
      if (!this.originAllowed(origin, host)) {
        return {
          status: 403, code: "origin_not_allowed",
          message: `Requests from web pages on other origins are refused (Origin: ${clip(origin)}). Start the server with --cors ${clip(origin)} to allow that page.`,
        };
      }
      return undefined;
    }
    // no Origin, but the browser says another site made the request (a navigation, an <img>, a form): refuse too
    const site = headers["sec-fetch-site"];
    if ((site === "cross-site" || site === "same-site") && !this.anyOrigin) {
      return { status: 403, code: "origin_not_allowed", message: "Requests that web pages on other sites make are refused. Start the server with --cors to allow a page's origin." };
    }
    return undefined;
  }

  /** Response headers for a request from an allowed cross-origin page (none for others). */
  corsHeaders(origin: string | undefined, host: string | undefined): Record<string, string> {
    if (origin === undefined || !this.originAllowed(origin, host) || sameOrigin(origin, host)) return {};
    return { "Access-Control-Allow-Origin": this.anyOrigin ? "*" : origin, Vary: "Origin" };
  }

  private originAllowed(origin: string, host: string | undefined): boolean {
    if (this.anyOrigin || sameOrigin(origin, host)) return true;
    return this.origins.has(origin.toLowerCase());
  }
}

/** An Origin naming this server itself, as the request addressed it (a page this server served). */
function sameOrigin(origin: string, host: string | undefined): boolean {
  return host !== undefined && origin.toLowerCase() === `http://${host.toLowerCase()}`;
}

/** Header values echoed in messages are cut, so a hostile header cannot make the error body large. */
function clip(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}
