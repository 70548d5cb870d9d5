import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import pLimit from 'p-limit';
import { isM4Error } from '../core/errors.ts';
import { classifyAddress, createAddressPolicy, parseCidr } from '../core/network/address-policy.ts';
import { resolveFetchOptions, type FetchOptions } from '../pipelines/engine/fetch/fetch-options.ts';
import { retryAfterMs } from '../core/retry.ts';
import { Fetcher, type FetchResult } from '../pipelines/engine/fetch/fetcher.ts';
import { startHostileServer, type HostileFile, type HostileServer } from '../sandbox/hostile-server.ts';

const CAT = Buffer.from('\xff\xd8\xff\xe0 not really a jpeg, but bytes all the same', 'latin1');
const FILES = new Map<string, HostileFile>([
  ['cat.jpg', { body: CAT, contentType: 'image/jpeg' }],
  ['robots-list.jpg', { body: CAT, headers: { 'X-Robots-Tag': 'NoIndex, NOAI' } }],
  ['robots-bot.jpg', { body: CAT, headers: { 'X-Robots-Tag': 'bingbot: noimageai' } }],
  ['robots-mixed.jpg', { body: CAT, headers: { 'X-Robots-Tag': 'googlebot: noindex, otherbot: nofollow, noai' } }],
  ['robots-harmless.jpg', { body: CAT, headers: { 'X-Robots-Tag': 'noindex, nofollow, unavailable_after: 25 Jun 2010 15:00:00 PST' } }],
]);

// Quick deadlines and backoff so failures finish fast; only 127.0.0.1 may be contacted.
const TEST_OPTIONS: Partial<FetchOptions> = {
  allowPrivateNetwork: ['127.0.0.1/32'],
  connectTimeoutMs: 1000,
  headersTimeoutMs: 2000,
  bodyTimeoutMs: 2000,
  retryBaseDelayMs: 1,
  retryMaxDelayMs: 2000,
};

const fetchers: Fetcher[] = [];
function fetcher(options: Partial<FetchOptions> = {}): Fetcher {
  const created = new Fetcher({ ...TEST_OPTIONS, ...options });
  fetchers.push(created);
  return created;
}

function failure(result: FetchResult): Extract<FetchResult, { ok: false }> {
  assert.equal(result.ok, false, `expected a failure, got ${JSON.stringify({ ...result, bytes: undefined })}`);
  return result as Extract<FetchResult, { ok: false }>;
}

let server: HostileServer;
before(async () => {
  server = await startHostileServer(FILES);
});
after(async () => {
  await Promise.all(fetchers.map((f) => f.close()));
  await server.close();
});

describe('Fetcher: success and HTTP statuses', () => {
  it('downloads a file', async () => {
    const f = fetcher();
    const result = await f.fetch(server.url('/f/cat.jpg'));
    assert.deepEqual(result, { ok: true, bytes: CAT, finalUrl: server.url('/f/cat.jpg'), httpStatus: 200, contentType: 'image/jpeg', attempts: 1 });
    assert.deepEqual(f.metrics, { requests: 1, retries: 0, redirects: 0, bytes: CAT.length });
  });

  it('fails without retrying on 404 and 501', async () => {
    for (const [path, status] of [
      ['/f/absent.jpg', 404],
      ['/status/404', 404],
      ['/status/501', 501],
      ['/status/403', 403],
    ] as const) {
      const result = failure(await fetcher().fetch(server.url(path)));
      assert.deepEqual(result, { ok: false, status: 'failed_to_download', error: `http ${status}`, httpStatus: status, attempts: 1 });
    }
  });

  it('retries 5xx and 429 up to retries + 1 attempts', async () => {
    for (const status of [500, 503, 429]) {
      const f = fetcher();
      const path = `/status/${status}?t=${status}`;
      const result = failure(await f.fetch(server.url(path)));
      assert.deepEqual(result, { ok: false, status: 'failed_to_download', error: `http ${status}`, httpStatus: status, attempts: 3 });
      assert.equal(server.hits(path), 3);
      assert.equal(f.metrics.retries, 2);
    }
    const once = failure(await fetcher({ retries: 0 }).fetch(server.url('/status/502')));
    assert.equal(once.attempts, 1);
  });

  it('recovers from a flaky server and counts the retries', async () => {
    const f = fetcher();
    const result = await f.fetch(server.url('/flaky/2/cat.jpg'));
    assert.equal(result.ok, true);
    assert.equal(result.attempts, 3);
    assert.deepEqual(f.metrics, { requests: 3, retries: 2, redirects: 0, bytes: CAT.length });
    assert.equal(server.hits('/flaky/2/cat.jpg'), 3);

    const tooFlaky = failure(await f.fetch(server.url('/flaky/3/cat.jpg')));
    assert.equal(tooFlaky.error, 'http 500');
    assert.equal(tooFlaky.attempts, 3);
    assert.equal(server.hits('/flaky/3/cat.jpg'), 3);
  });
});

describe('Fetcher: Retry-After', () => {
  it('waits as long as Retry-After asks', async () => {
    const started = Date.now();
    const result = await fetcher({ retryBaseDelayMs: 1, retryMaxDelayMs: 20_000 }).fetch(server.url('/retry-after/1/cat.jpg'));
    const elapsed = Date.now() - started;
    assert.equal(result.ok, true);
    assert.equal(result.attempts, 2);
    // At least the second asked for; the upper bound only tells it apart from the 20 s cap (a loaded machine is slow).
    assert.ok(elapsed >= 950 && elapsed < 10_000, `waited ${elapsed} ms for Retry-After: 1`);
  });

  it('gives up at once when Retry-After is longer than retryMaxDelayMs', async () => {
    const started = Date.now();
    const result = failure(await fetcher({ retryMaxDelayMs: 8000 }).fetch(server.url('/retry-after/30/cat.jpg')));
    assert.deepEqual(result, { ok: false, status: 'failed_to_download', error: 'http 429', httpStatus: 429, attempts: 1 });
    // Neither the 30 s asked nor the 8 s cap was waited (the margin is for a loaded machine).
    assert.ok(Date.now() - started < 4000, `gave up after ${Date.now() - started} ms`);
  });

  it('parses delta-seconds and HTTP dates', () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    assert.equal(retryAfterMs('3', now), 3000);
    assert.equal(retryAfterMs(' 0 ', now), 0);
    assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:07 GMT', now), 7000);
    assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:27:00 GMT', now), 0);
    for (const nonsense of [undefined, '', 'soon', '1.5', '-3']) assert.equal(retryAfterMs(nonsense, now), undefined);
  });
});

describe('Fetcher: timeouts, resets and limits', () => {
  it('times out waiting for headers, and retries', async () => {
    const result = failure(await fetcher({ headersTimeoutMs: 100, retries: 1 }).fetch(server.url('/slow-headers/5000')));
    assert.deepEqual(result, { ok: false, status: 'failed_to_download', error: 'timeout: headers after 100 ms', attempts: 2 });
    assert.equal(server.hits('/slow-headers/5000'), 2);
  });

  it('serves slow headers within the deadline', async () => {
    const result = await fetcher({ headersTimeoutMs: 1000 }).fetch(server.url('/slow-headers/50/cat.jpg'));
    assert.equal(result.ok, true);
  });

  it('times out on a stalled body', async () => {
    const result = failure(await fetcher({ bodyTimeoutMs: 150, retries: 0 }).fetch(server.url('/slow-body/5000')));
    assert.deepEqual(result, { ok: false, status: 'failed_to_download', error: 'timeout: body after 150 ms', httpStatus: 200, attempts: 1 });
    const slowButFine = await fetcher({ bodyTimeoutMs: 1000 }).fetch(server.url('/slow-body/50/cat.jpg'));
    assert.equal(slowButFine.ok && slowButFine.bytes.equals(CAT), true);
  });

  it('fails on a connection reset mid-body after retrying', async () => {
    const result = failure(await fetcher().fetch(server.url('/reset')));
    assert.match(result.error, /^network: /);
    assert.equal(result.httpStatus, 200);
    assert.equal(result.attempts, 3);
    assert.equal(server.hits('/reset'), 3);
  });

  it('fails on a refused connection after retrying', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as net.AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const result = failure(await fetcher().fetch(`http://127.0.0.1:${port}/f/cat.jpg`));
    assert.deepEqual(result, { ok: false, status: 'failed_to_download', error: 'network: ECONNREFUSED', attempts: 3 });
  });

  it('enforces the body limit with Content-Length, before reading', async () => {
    const f = fetcher({ maxBodyBytes: 1024 * 1024 });
    const result = failure(await f.fetch(server.url('/huge/104857600')));
    assert.deepEqual(result, { ok: false, status: 'failed_to_download', error: 'body larger than 1048576 bytes', httpStatus: 200, attempts: 1 });
    const exact = await f.fetch(server.url('/huge/1048576'));
    assert.equal(exact.ok && exact.bytes.length, 1048576);
  });

  it('enforces the body limit without Content-Length, while streaming', async () => {
    const f = fetcher({ maxBodyBytes: 1024 * 1024 });
    const result = failure(await f.fetch(server.url('/huge-chunked/104857600')));
    assert.deepEqual(result, { ok: false, status: 'failed_to_download', error: 'body larger than 1048576 bytes', httpStatus: 200, attempts: 1 });
    const exact = await f.fetch(server.url('/huge-chunked/1048576'));
    assert.equal(exact.ok && exact.bytes.length, 1048576);
    assert.equal(f.metrics.bytes, 1048576);
  });
});

describe('Fetcher: redirects', () => {
  it('follows a chain of 5 and refuses a chain of 6', async () => {
    const f = fetcher();
    const five = await f.fetch(server.url('/redirect/5/cat.jpg'));
    assert.deepEqual(five, { ok: true, bytes: CAT, finalUrl: server.url('/redirect/0/cat.jpg'), httpStatus: 200, contentType: 'image/jpeg', attempts: 1 });
    assert.equal(f.metrics.redirects, 5);
    const six = failure(await f.fetch(server.url('/redirect/6/cat.jpg')));
    assert.deepEqual(six, { ok: false, status: 'failed_to_download', error: 'too many redirects (6)', httpStatus: 302, attempts: 1 });
    assert.equal(server.hits('/redirect/0/cat.jpg'), 1);
  });

  it('honours a lower maxRedirects', async () => {
    const result = failure(await fetcher({ maxRedirects: 0 }).fetch(server.url('/redirect/1/cat.jpg')));
    assert.equal(result.error, 'too many redirects (1)');
  });

  it('detects a loop', async () => {
    const result = failure(await fetcher().fetch(server.url('/loop/a')));
    assert.deepEqual(result, { ok: false, status: 'failed_to_download', error: 'redirect loop', httpStatus: 302, attempts: 1 });
  });

  it('follows every redirect status and relative locations', async () => {
    for (const status of [301, 302, 303, 307, 308]) {
      const result = await fetcher().fetch(server.url(`/redirect-to?status=${status}&location=${encodeURIComponent('/f/cat.jpg')}`));
      assert.equal(result.ok && result.finalUrl, server.url('/f/cat.jpg'), `status ${status}`);
    }
  });

  it('retries a flaky hop inside a chain', async () => {
    const result = await fetcher().fetch(server.url('/redirect/2/flaky/1/cat.jpg'));
    assert.equal(result.ok, true);
    assert.equal(result.attempts, 2);
  });

  it('refuses bad redirect targets', async () => {
    const cases: Array<[string, string]> = [
      ['ftp://127.0.0.1/cat.jpg', 'unsupported scheme ftp:'],
      ['file:///etc/passwd', 'unsupported scheme file:'],
      ['http://[::1', 'invalid url'],
    ];
    for (const [location, error] of cases) {
      const result = failure(await fetcher().fetch(server.url(`/redirect-to?location=${encodeURIComponent(location)}`)));
      assert.equal(result.error, error);
      assert.equal(result.httpStatus, 302);
    }
    const noLocation = failure(await fetcher().fetch(server.url('/status/302')));
    assert.equal(noLocation.error, 'redirect 302 without location');
  });
});

describe('Fetcher: address policy end to end (loopback only)', () => {
  it('blocks a redirect to a loopback address outside the allow-list without connecting', async () => {
    const target = await startHostileServer(FILES, { host: '127.0.0.2' });
    try {
      const location = target.url('/f/cat.jpg');
      const result = failure(await fetcher().fetch(server.url(`/redirect-to?location=${encodeURIComponent(location)}`)));
      assert.deepEqual(result, { ok: false, status: 'failed_to_download', error: 'blocked address 127.0.0.2 (loopback)', httpStatus: 302, attempts: 1 });
      assert.equal(target.hits('/f/cat.jpg'), 0);
      assert.equal(target.connections().total, 0);
      // The same redirect goes through once the target is allowed, so the block above is the policy's doing.
      const allowed = await fetcher({ allowPrivateNetwork: ['127.0.0.0/8'] }).fetch(server.url(`/redirect-to?location=${encodeURIComponent(location)}`));
      assert.equal(allowed.ok && allowed.finalUrl, location);
      assert.equal(target.hits('/f/cat.jpg'), 1);
    } finally {
      await target.close();
    }
  });

  it('blocks a host name that resolves to an address outside the allow-list', async () => {
    const path = '/f/cat.jpg?via=localhost';
    const url = `http://localhost:${server.port}${path}`;
    const before = server.connections().total;
    const result = failure(await fetcher({ allowPrivateNetwork: ['127.0.0.2/32'] }).fetch(url));
    assert.match(result.error, /^blocked address (127\.0\.0\.1|::1) \(loopback\)$/);
    assert.equal(result.attempts, 1);
    assert.equal(server.hits(path), 0);
    assert.equal(server.connections().total, before);
    const allowed = await fetcher({ allowPrivateNetwork: ['127.0.0.0/8', '::1/128'] }).fetch(url);
    assert.equal(allowed.ok, true);
  });

  it('blocks IP literals before any request', async () => {
    const before = server.connections().total;
    const cases: Array<[Partial<FetchOptions>, string, string]> = [
      [{ allowPrivateNetwork: false }, server.url('/f/cat.jpg'), 'blocked address 127.0.0.1 (loopback)'],
      [{ allowPrivateNetwork: false }, `http://2130706433:${server.port}/f/cat.jpg`, 'blocked address 127.0.0.1 (loopback)'],
      [{ allowPrivateNetwork: false }, `http://[::ffff:127.0.0.1]:${server.port}/f/cat.jpg`, 'blocked address ::ffff:7f00:1 (loopback)'],
      [{}, `http://127.0.0.2:${server.port}/f/cat.jpg`, 'blocked address 127.0.0.2 (loopback)'],
      [{}, `http://[::1]:${server.port}/f/cat.jpg`, 'blocked address ::1 (loopback)'],
    ];
    for (const [options, url, error] of cases) {
      assert.deepEqual(await fetcher(options).fetch(url), { ok: false, status: 'failed_to_download', error, attempts: 0 }, url);
    }
    assert.equal(server.connections().total, before);
  });

  it('allows everything with allowPrivateNetwork: true', async () => {
    const result = await fetcher({ allowPrivateNetwork: true }).fetch(server.url('/f/cat.jpg'));
    assert.equal(result.ok, true);
  });
});

describe('Fetcher: X-Robots-Tag', () => {
  it('marks noai and noimageai responses opted_out and keeps no body', async () => {
    const f = fetcher();
    const cases: Array<[string, string]> = [
      ['/noai/cat.jpg', 'X-Robots-Tag: noai'],
      ['/noimageai/cat.jpg', 'X-Robots-Tag: noimageai'],
      ['/f/robots-list.jpg', 'X-Robots-Tag: noai'],
      ['/f/robots-bot.jpg', 'X-Robots-Tag: noimageai'],
      ['/f/robots-mixed.jpg', 'X-Robots-Tag: noai'],
      ['/redirect/2/noai/cat.jpg', 'X-Robots-Tag: noai'],
    ];
    for (const [path, error] of cases) {
      assert.deepEqual(await f.fetch(server.url(path)), { ok: false, status: 'opted_out', error, httpStatus: 200, attempts: 1 }, path);
    }
    assert.equal(f.metrics.bytes, 0);
  });

  it('keeps images whose X-Robots-Tag does not opt out', async () => {
    const result = await fetcher().fetch(server.url('/f/robots-harmless.jpg'));
    assert.equal(result.ok, true);
  });
});

describe('Fetcher: bad input and aborts', () => {
  it('reports bad URLs without throwing', async () => {
    const f = fetcher();
    const cases: Array<[string, string]> = [
      ['not a url', 'invalid url'],
      ['', 'invalid url'],
      ['http://', 'invalid url'],
      ['ftp://127.0.0.1/cat.jpg', 'unsupported scheme ftp:'],
      ['javascript:alert(1)', 'unsupported scheme javascript:'],
      ['data:image/png;base64,AAAA', 'unsupported scheme data:'],
    ];
    for (const [url, error] of cases) {
      assert.deepEqual(await f.fetch(url), { ok: false, status: 'failed_to_download', error, attempts: 0 }, url);
    }
    assert.equal(f.metrics.requests, 0);
  });

  it('throws the reason when aborted before, during a request, or during a backoff', async () => {
    const f = fetcher({ retryBaseDelayMs: 60_000, retryMaxDelayMs: 60_000 });
    const reason = new Error('stop');
    await assert.rejects(f.fetch(server.url('/f/cat.jpg'), AbortSignal.abort(reason)), (err) => err === reason);

    const during = new AbortController();
    setTimeout(() => during.abort(reason), 50);
    await assert.rejects(f.fetch(server.url('/slow-headers/5000?abort'), during.signal), (err) => err === reason);

    const backoff = new AbortController();
    const started = Date.now();
    setTimeout(() => backoff.abort(reason), 100);
    await assert.rejects(f.fetch(server.url('/status/503?abort'), backoff.signal), (err) => err === reason);
    // The backoff is a random wait of up to a minute; an abort that did not cut it short would mostly show here.
    assert.ok(Date.now() - started < 10_000, `aborted after ${Date.now() - started} ms`);
  });
});

describe('Fetcher: connection cap', () => {
  it('never opens more than maxConnectionsPerHost connections to one server', async () => {
    const own = await startHostileServer(FILES);
    try {
      const f = fetcher({ maxConnectionsPerHost: 4 });
      const limit = pLimit(64);
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => limit(() => f.fetch(own.url(`/slow-headers/5/cat.jpg?i=${i}`)))));
      assert.equal(results.filter((r) => r.ok).length, 200);
      const { peak, total } = own.connections();
      assert.ok(peak <= 4, `peak ${peak} connections`);
      assert.ok(peak >= 2, `peak ${peak}: the requests did not overlap`);
      assert.ok(total <= 4, `opened ${total} connections: keep-alive not reused`);
      assert.equal(f.metrics.requests, 200);
    } finally {
      await own.close();
    }
  });
});

describe('address-policy', () => {
  const table: Array<[string, string | undefined]> = [
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', undefined],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'metadata'],
    ['169.254.0.1', 'link-local'],
    ['100.64.0.1', 'cgnat'],
    ['100.128.0.1', undefined],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'documentation'],
    ['198.51.100.7', 'documentation'],
    ['203.0.113.9', 'documentation'],
    ['198.18.0.1', 'reserved'],
    ['192.0.0.8', 'reserved'],
    ['8.8.8.8', undefined],
    ['1.1.1.1', undefined],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fd00:ec2::254', 'metadata'],
    ['ff02::1', 'multicast'],
    ['2001:db8::1', 'documentation'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::ffff:8.8.8.8', undefined],
    ['::127.0.0.1', 'reserved'],
    ['64:ff9b::10.0.0.1', 'private'],
    ['64:ff9b::a9fe:a9fe', 'metadata'],
    ['64:ff9b::8.8.8.8', undefined],
    ['2002:c0a8:101::1', 'private'],
    ['2002:808:808::1', undefined],
    ['2001:4860::8888', undefined],
    ['2606:4700:4700::1111', undefined],
    ['4000::1', 'reserved'],
    ['not an ip', 'invalid'],
    ['', 'invalid'],
  ];

  it('classifies every kind of address', () => {
    for (const [address, reason] of table) assert.equal(classifyAddress(address), reason, address);
  });

  it('blocks every non-public address by default and allows listed ranges only', () => {
    const strict = createAddressPolicy(false);
    for (const [address, reason] of table) {
      assert.deepEqual(strict(address), reason === undefined ? { allowed: true } : { allowed: false, reason }, address);
    }
    const lan = createAddressPolicy(['10.0.0.0/8', 'fd12::/16', '127.0.0.1']);
    assert.deepEqual(lan('10.1.2.3'), { allowed: true });
    assert.deepEqual(lan('::ffff:10.1.2.3'), { allowed: true });
    assert.deepEqual(lan('fd12:3456::1'), { allowed: true });
    assert.deepEqual(lan('127.0.0.1'), { allowed: true });
    assert.deepEqual(lan('127.0.0.2'), { allowed: false, reason: 'loopback' });
    assert.deepEqual(lan('192.168.1.1'), { allowed: false, reason: 'private' });
    assert.deepEqual(lan('169.254.169.254'), { allowed: false, reason: 'metadata' });
    assert.deepEqual(lan('8.8.8.8'), { allowed: true });
    const open = createAddressPolicy(true);
    for (const [address] of table) assert.deepEqual(open(address), { allowed: true });
  });

  it('judges IPv4-mapped and NAT64 IPv6 like the IPv4 inside', () => {
    const octet = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(octet, octet, octet, octet, (a, b, c, d) => {
        const ipv4 = `${a}.${b}.${c}.${d}`;
        const hex = `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
        const expected = classifyAddress(ipv4);
        assert.equal(classifyAddress(`::ffff:${ipv4}`), expected);
        assert.equal(classifyAddress(`::ffff:${hex}`), expected);
        assert.equal(classifyAddress(`64:ff9b::${hex}`), expected);
      }),
    );
  });

  it('rejects bad CIDRs with E_USAGE', () => {
    assert.deepEqual(parseCidr('10.0.0.0/8'), ['10.0.0.0', 8, 'ipv4']);
    assert.deepEqual(parseCidr('::1'), ['::1', 128, 'ipv6']);
    for (const bad of ['10.0.0.0/33', '10.0.0/8', 'fe80::/129', '10.0.0.0/8/1', 'localhost', '10.0.0.0/', '10.0.0.0/-1']) {
      assert.throws(
        () => parseCidr(bad),
        (err) => isM4Error(err, 'E_USAGE'),
        bad,
      );
    }
  });
});

describe('fetch options', () => {
  it('applies the documented defaults', () => {
    assert.deepEqual(resolveFetchOptions({}), {
      maxConnectionsPerHost: 16,
      connectTimeoutMs: 10000,
      headersTimeoutMs: 15000,
      bodyTimeoutMs: 30000,
      retries: 2,
      retryBaseDelayMs: 500,
      retryMaxDelayMs: 10000,
      maxRedirects: 5,
      maxBodyBytes: 20 * 1024 * 1024,
      userAgent: 'm4data/0.1 (vision-language dataset builder; honours X-Robots-Tag noai)',
      allowPrivateNetwork: false,
    });
    assert.equal(resolveFetchOptions({ retries: undefined, maxRedirects: 0 }).retries, 2);
  });

  it('rejects nonsense with E_USAGE', () => {
    const bad: unknown[] = [
      { retries: -1 },
      { retries: 1.5 },
      { maxConnectionsPerHost: 0 },
      { headersTimeoutMs: Number.NaN },
      { bodyTimeoutMs: Infinity },
      { maxBodyBytes: '20' },
      { retryBaseDelayMs: 500, retryMaxDelayMs: 100 },
      { userAgent: '' },
      { userAgent: 'a\r\nX-Injected: 1' },
      { allowPrivateNetwork: 'yes' },
      { allowPrivateNetwork: ['10.0.0.0/40'] },
      { allowPrivateNetwork: [42] },
      { maxRedirect: 3 },
    ];
    for (const options of bad) {
      assert.throws(
        () => resolveFetchOptions(options as Partial<FetchOptions>),
        (err) => isM4Error(err, 'E_USAGE'),
        JSON.stringify(options),
      );
    }
    assert.throws(
      () => new Fetcher({ retries: -1 }),
      (err) => isM4Error(err, 'E_USAGE'),
    );
  });
});
