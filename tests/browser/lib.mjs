// What the browser tests share: checks with a running count, a minimal IMAP reader, the
// page checks (axe-core WCAG 2.2 AA, no script, no overflow, screenshots at 1280, 360
// and 320 px and at 200 % zoom), logging in, raw HTTP and keyboard moves. Used by desk.mjs and pages.mjs.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createRequire } from 'node:module';
import puppeteer from 'puppeteer-core';

const require = createRequire(import.meta.url);
const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (see the top of the test script)`);
  return v;
};

let passed = 0;
let failed = 0;
export function check(cond, what) {
  if (cond) {
    passed++;
    console.log(`ok - ${what}`);
  } else {
    failed++;
    console.log(`not ok - ${what}`);
    throw new Error(`check failed: ${what}`);
  }
}

// ---- A minimal IMAP client: the messages in a mailbox's INBOX, as text. ----
export async function inbox(user) {
  const sock = net.connect(Number(env('IMAP_PORT')), '127.0.0.1');
  let buf = Buffer.alloc(0);
  let wake = null;
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); if (wake) wake(); });
  const more = () => new Promise((res, rej) => {
    wake = res;
    sock.once('error', rej);
    setTimeout(() => rej(new Error('IMAP timeout')), 10000);
  });
  // One response: a line, with any literals `{n}` it carries read whole.
  async function response() {
    let text = '';
    const literals = [];
    for (;;) {
      let i;
      while ((i = buf.indexOf('\r\n')) < 0) await more();
      const line = buf.subarray(0, i).toString('latin1');
      buf = buf.subarray(i + 2);
      text += line;
      const m = line.match(/\{(\d+)\}$/);
      if (!m) return { text, literals };
      const n = Number(m[1]);
      while (buf.length < n) await more();
      literals.push(buf.subarray(0, n).toString('utf8'));
      buf = buf.subarray(n);
    }
  }
  let seq = 0;
  async function command(cmd) {
    const tag = `a${++seq}`;
    sock.write(`${tag} ${cmd}\r\n`);
    const out = [];
    for (;;) {
      const r = await response();
      out.push(r);
      if (r.text.startsWith(`${tag} `)) {
        if (!r.text.startsWith(`${tag} OK`)) throw new Error(`IMAP ${cmd.split(' ')[0]}: ${r.text}`);
        return out;
      }
    }
  }
  await response(); // greeting
  await command(`LOGIN ${user} ${env('MAIL_PASSWORD')}`);
  const sel = await command('SELECT INBOX');
  const exists = Number(sel.map((r) => r.text.match(/^\* (\d+) EXISTS/)).find(Boolean)?.[1] ?? 0);
  const mails = exists ? (await command('FETCH 1:* BODY.PEEK[]')).flatMap((r) => r.literals) : [];
  await command('LOGOUT').catch(() => {});
  sock.destroy();
  return mails;
}

// The text of a mail, its transfer encoding undone (of the first text part when it has
// several).
export function mailText(raw) {
  const boundary = raw.match(/boundary="?([^";\r\n]+)"?/i)?.[1];
  const parts = boundary ? raw.split(`--${boundary}`).map((p) => p.replace(/^\r?\n/, '')) : [raw];
  const part = parts.find((p) => /^content-type:\s*text\/plain/im.test(p.split(/\r?\n\r?\n/)[0])) ?? raw;
  const [head, ...rest] = part.split(/\r?\n\r?\n/);
  const body = rest.join('\n\n');
  const cte = (head.match(/^content-transfer-encoding:\s*(\S+)/im) || [])[1]?.toLowerCase();
  if (cte === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  if (cte === 'quoted-printable') {
    const bytes = body.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
    return Buffer.from(bytes, 'latin1').toString('utf8');
  }
  return body;
}

// Waits (30 s at most) until `user`'s INBOX holds a mail whose text has a link matching
// `re` beyond the first `seen` such links; returns the last link and how many there are.
export async function waitLink(user, re, seen = 0) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const links = (await inbox(user)).map(mailText).map((t) => t.match(re)?.[0]).filter(Boolean);
    if (links.length > seen) return { link: links[links.length - 1], count: links.length };
    if (Date.now() > deadline) throw new Error(`no mail with ${re} for ${user} within 30 s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// ---- Checks on a page: axe-core (WCAG 2.2 AA, which holds 2.1 AA), no script, reflow, screenshots at four sizes. ----
// axe-core does not enter frames (the desk's only frame is the sandboxed newsletter
// preview, which runs no script; the same newsletter is checked as the archive page).
export const cspErrors = [];

// Waits until every frame of the page has loaded and had a moment to paint at the
// current size (a sandboxed frame is drawn by its own process).
async function framesPainted(page) {
  const frames = page.frames().filter((f) => f !== page.mainFrame());
  for (const f of frames) await f.waitForFunction(() => document.readyState === 'complete');
  if (frames.length) await new Promise((r) => setTimeout(r, 400));
}
// The sizes every page is checked and photographed at: a desktop, a phone, the
// narrowest phone WCAG 1.4.10 (reflow) names (320 CSS px), and the desktop at 200 %
// zoom (1.4.4: a 1280 px window zoomed to 200 % lays out 640 CSS px at two device pixels
// each, which is what Chromium's zoom does).
const SIZES = [
  { label: '1280', width: 1280, height: 900, deviceScaleFactor: 1 },
  { label: '360', width: 360, height: 740, deviceScaleFactor: 1 },
  { label: '320', width: 320, height: 640, deviceScaleFactor: 1 },
  { label: 'zoom200', width: 640, height: 450, deviceScaleFactor: 2 },
];

// What does not fit at the current size: a control (link, button, field, label) outside
// the screen's width, or a box that cuts its content off. The skip link (off screen
// until it has the focus) and visually hidden texts are meant to be out of sight.
function misfits() {
  const w = document.documentElement.clientWidth;
  const hidden = (e) => e.closest('.skip, .visually-hidden');
  const out = [];
  for (const e of document.querySelectorAll('a, button, input, select, textarea, summary, label')) {
    const r = e.getBoundingClientRect();
    if (hidden(e) || (r.width === 0 && r.height === 0)) continue;
    if (r.left < -1 || r.right > w + 1) {
      out.push(`${e.tagName.toLowerCase()} "${(e.textContent || e.name || '').trim().slice(0, 30)}" at ${Math.round(r.left)}..${Math.round(r.right)} px`);
    }
  }
  for (const e of document.querySelectorAll('body *')) {
    const st = getComputedStyle(e);
    if (hidden(e) || !['hidden', 'clip'].includes(st.overflowX)) continue;
    if (e.scrollWidth > e.clientWidth + 1) out.push(`${e.tagName.toLowerCase()}.${e.className} cuts off its content`);
  }
  return out;
}

export async function capture(page, name, shots = env('SCREENSHOT_DIR')) {
  fs.mkdirSync(shots, { recursive: true });
  for (const { label, ...size } of SIZES) {
    await page.setViewport(size);
    await framesPainted(page);
    const at = `${name} (${label === 'zoom200' ? '200 % zoom' : `${label} px`})`;
    const scripts = await page.evaluate(() => document.scripts.length);
    check(scripts === 0, `${at}: no script on the page`);
    await page.evaluate(AXE_SOURCE);
    const result = await page.evaluate(() => axe.run(document, {
      iframes: false,
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22a', 'wcag22aa'] },
    }));
    const v = result.violations.map((x) => `${x.id}: ${x.help} (${x.nodes.map((n) => n.target.join(' ')).join(', ')})`);
    check(v.length === 0, `${at}: axe-core finds no WCAG 2.2 AA violation${v.length ? `\n    ${v.join('\n    ')}` : ''}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(overflow <= 0, `${at}: nothing wider than the screen (${overflow} px over)`);
    const cut = await page.evaluate(misfits);
    check(cut.length === 0, `${at}: every control within the screen, no text cut off${cut.length ? `\n    ${cut.join('\n    ')}` : ''}`);
    // A frame out of the first screen is captured only when the whole page is the screen.
    const framed = (await page.$('iframe')) !== null;
    await page.screenshot({ path: path.join(shots, `${name}-${label}.png`), fullPage: true, captureBeyondViewport: !framed });
  }
  await page.setViewport({ width: 1280, height: 900 });
}

export async function newPage(context) {
  const page = await context.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspErrors.push(m.text()); });
  page.on('pageerror', (e) => cspErrors.push(`page error: ${e.message}`));
  return page;
}

export const text = (page, sel) => page.$eval(sel, (e) => e.textContent.trim());
export const h1 = (page) => text(page, 'h1');
export async function clickAndWait(page, sel) {
  await page.bringToFront();
  const [response] = await Promise.all([page.waitForNavigation(), page.click(sel)]);
  return response;
}
export async function session(page) {
  const cookies = await page.cookies();
  return cookies.find((c) => c.name === 'desk_sessie');
}

// Raw HTTP, for what a browser page would not send (forged cookies, a missing token) or
// for a download.
export async function http(method, url, { cookie, body } = {}) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (cookie) headers.cookie = cookie;
  const r = await fetch(url, { method, headers, body, redirect: 'manual' });
  return { status: r.status, location: r.headers.get('location'), headers: r.headers, text: await r.text(), setCookie: r.headers.get('set-cookie') };
}

// Presses Tab until the focus is on `sel` (at most 80 times); checks the focus is visible.
export async function tabTo(page, sel) {
  for (let i = 0; i < 80; i++) {
    await page.keyboard.press('Tab');
    const here = await page.evaluate((s) => {
      const a = document.activeElement;
      if (!a || !a.matches(s)) return null;
      const st = getComputedStyle(a);
      return { outline: st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) >= 2, shadow: st.boxShadow !== 'none', bg: st.backgroundColor };
    }, sel);
    if (here) {
      check(here.outline || here.shadow, `keyboard: ${sel} reached by Tab, with a visible focus`);
      return;
    }
  }
  throw new Error(`keyboard: ${sel} not reached by Tab`);
}
export async function enterAndWait(page) {
  const [response] = await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  return response;
}

export function launch() {
  return puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--lang=nl-NL'],
  });
}

// Runs `body(browser)` in a fresh browser, then prints "N passed, N failed" and exits.
export async function run(body) {
  const browser = await launch();
  try {
    await body(browser);
    check(cspErrors.length === 0, `no Content Security Policy violation or page error${cspErrors.length ? `: ${cspErrors.join(' | ')}` : ''}`);
  } catch (e) {
    console.log(`error: ${e.stack || e}`);
    if (!failed) failed++;
  } finally {
    await browser.close();
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  }
}
