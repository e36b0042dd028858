// The server's request policy (src/server/policy.ts) on its own: which Host headers count as loopback, which
// Origins are let in with and without --cors, and the --cors list's parsing. The servers that enforce it are in
// hostile-server.test.ts and hostile-browser.test.ts; the non-loopback bind is tested here only, so that no test
// opens a port beyond 127.0.0.1.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { hostOfHeader, isLoopbackName, parseCorsList, RequestPolicy } from "../src/server/policy.js";

test("loopback names: localhost, *.localhost, 127.0.0.0/8, ::1 and its mapped form; nothing else", () => {
  for (const h of ["localhost", "LOCALHOST", "localhost.", "app.localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"]) {
    assert.ok(isLoopbackName(h), h);
  }
  for (const h of ["attacker.example", "localhost.attacker.example", "127.0.0.1.nip.io", "0.0.0.0", "::", "10.0.0.1", "192.168.1.5", "::ffff:10.0.0.1", "", "localhos"]) {
    assert.not.ok(isLoopbackName(h), h);
  }
});

test("Host headers: the host part, or undefined when malformed", () => {
  assert.is(hostOfHeader("127.0.0.1:8080"), "127.0.0.1");
  assert.is(hostOfHeader("[::1]:8080"), "::1");
  assert.is(hostOfHeader("localhost"), "localhost");
  for (const bad of ["127.0.0.1@evil.example", "evil.example/x", "a b", "127.0.0.1:80:80", "[::1", ""]) assert.is(hostOfHeader(bad), undefined, bad);
});

test("bound to loopback: only loopback Hosts; bound elsewhere: any Host (the user chose to serve the network)", () => {
  const local = new RequestPolicy({ bindHost: "127.0.0.1" });
  assert.is(local.refusal({ host: "127.0.0.1:8080" }), undefined);
  assert.is(local.refusal({}), undefined, "HTTP/1.0 without Host: no browser");
  assert.is(local.refusal({ host: "rebind.attacker.example:8080" })?.code, "host_not_allowed");
  for (const bind of ["0.0.0.0", "::", "192.168.1.5", "myhost.lan"]) {
    const net = new RequestPolicy({ bindHost: bind });
    assert.ok(net.anyHost, bind);
    assert.is(net.refusal({ host: "myhost.lan:8080" }), undefined, bind);
    // origins are still checked: exposing the server does not open it to every web page
    assert.is(net.refusal({ host: "myhost.lan:8080", origin: "http://attacker.example" })?.code, "origin_not_allowed");
  }
  assert.not.ok(new RequestPolicy({ bindHost: "localhost" }).anyHost);
  assert.not.ok(new RequestPolicy({ bindHost: "::1" }).anyHost);
});

test("origins: none without --cors (same origin aside), the listed ones with it, every one with *", () => {
  const none = new RequestPolicy({ bindHost: "127.0.0.1" });
  assert.is(none.refusal({ host: "127.0.0.1:8080", origin: "http://localhost:3000" })?.code, "origin_not_allowed");
  assert.is(none.refusal({ host: "127.0.0.1:8080", origin: "http://127.0.0.1:8080" }), undefined, "the server's own origin");
  assert.is(none.refusal({ host: "127.0.0.1:8080", "sec-fetch-site": "cross-site" })?.code, "origin_not_allowed");
  assert.is(none.refusal({ host: "127.0.0.1:8080", "sec-fetch-site": "none" }), undefined, "typed into the address bar");
  assert.equal(none.corsHeaders("http://localhost:3000", "127.0.0.1:8080"), {});

  const some = new RequestPolicy({ bindHost: "127.0.0.1", cors: parseCorsList("http://localhost:3000, https://App.Example") });
  assert.is(some.refusal({ host: "127.0.0.1:8080", origin: "http://localhost:3000" }), undefined);
  assert.is(some.refusal({ host: "127.0.0.1:8080", origin: "https://app.example" }), undefined);
  assert.is(some.refusal({ host: "127.0.0.1:8080", origin: "http://localhost:3001" })?.code, "origin_not_allowed");
  assert.equal(some.corsHeaders("http://localhost:3000", "127.0.0.1:8080"), { "Access-Control-Allow-Origin": "http://localhost:3000", Vary: "Origin" });

  const any = new RequestPolicy({ bindHost: "127.0.0.1", cors: ["*"] });
  assert.is(any.refusal({ host: "127.0.0.1:8080", origin: "https://anyone.example" }), undefined);
  assert.is(any.refusal({ host: "127.0.0.1:8080", origin: "null" }), undefined);
  assert.is(any.corsHeaders("https://anyone.example", "127.0.0.1:8080")["Access-Control-Allow-Origin"], "*");
  // a Host check is not an Origin check: * does not let a rebinding name in
  assert.is(any.refusal({ host: "rebind.attacker.example:8080" })?.code, "host_not_allowed");
});

test("--cors parsing: origins normalised, paths and empty lists refused with the fix", () => {
  assert.equal(parseCorsList("http://LOCALHOST:3000/,*,null"), ["http://localhost:3000", "*", "null"]);
  assert.equal(parseCorsList("http://localhost:80"), ["http://localhost"]);
  assert.throws(() => parseCorsList("http://x.example/app"), /not an origin.*did you mean http:\/\/x\.example/);
  assert.throws(() => parseCorsList("localhost:3000"), /not an origin/);
  assert.throws(() => parseCorsList(" , "), /at least one origin/);
});

test.run();
