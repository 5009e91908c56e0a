// The web desk in headless Chromium, against a running `outreach run` and the real mail
// stack. Started by tests/it/webdesk.rs, which sends the mail, starts the daemon and
// checks the store and the mailboxes afterwards. Environment:
//   DESK_URL        the daemon's base URL (http://127.0.0.1:PORT)
//   DESK_USER       the desk user (in desk.users), whose IMAP INBOX gets the login links
//   DESK_PASSWORD   that user's desk password (set with `outreach desk set-password`)
//   IMAP_PORT       the mail stack's plain IMAP port; MAIL_PASSWORD its accounts' password
//   CLOCK_FILE      the daemon's test clock (OUTREACH_CLOCK_FILE): moved to expire a link
//   SCREENSHOT_DIR  where the screenshots go (every page at 1280, 360 and 320 px and 200 % zoom)
//   CONV_QUESTION, CONV_OTHER, CONV_THIRD  conversation ids (MAO-n) made by the Rust side
//   CONV_HTML       a question written in HTML (script, tracking image, handlers) with a
//                   PDF and a photo attached
// Prints one line per check and a closing "N passed, N failed" line; exits 1 on failure.

import fs from 'node:fs';
import {
  capture, check, clickAndWait, enterAndWait, env, h1, http, inbox, mailText, newPage, run, session, tabTo, text, waitLink,
} from './lib.mjs';

const BASE = env('DESK_URL');
const USER = env('DESK_USER');
const Q = env('CONV_QUESTION');
const OTHER = env('CONV_OTHER');
const THIRD = env('CONV_THIRD');
const HTML = env('CONV_HTML');

// Waits for a login mail beyond the first `seen` ones; returns its link.
const loginLink = (seen) => waitLink(USER, /https?:\/\/\S+\/desk\/login\/[A-Za-z0-9_-]{20,}/, seen);
async function loginMails() {
  return (await inbox(USER)).map(mailText).filter((t) => /\/desk\/login\//.test(t)).length;
}

// Sets the daemon's test clock (OUTREACH_CLOCK_FILE) to a moment; it reads the file
// again within a second.
function setClock(at) {
  fs.writeFileSync(`${env('CLOCK_FILE')}.tmp`, at.toISOString().replace(/\.\d+Z$/, 'Z'));
  fs.renameSync(`${env('CLOCK_FILE')}.tmp`, env('CLOCK_FILE'));
}

await run(async (browser) => {
  const main = browser.defaultBrowserContext();
  const page = await newPage(main);

  // -- Before logging in. --
  await page.goto(`${BASE}/desk`);
  await page.waitForFunction(() => location.search.includes('opnieuw=1'));
  check(new URL(page.url()).pathname === '/desk/login', 'a desk page without login leads to the login page');
  check((await page.$eval('html', (e) => e.lang)) === 'nl', 'the page says it is Dutch (lang="nl")');
  await capture(page, 'login');
  await page.type('#email', 'geen-adres');
  await clickAndWait(page, 'form[action="/desk/login"] button');
  const described = await page.$eval('#email', (e) => [e.getAttribute('aria-describedby'), e.getAttribute('aria-invalid')]);
  check(described[0].includes('email-error') && described[1] === 'true', 'a wrong address: the error is tied to its field (aria-describedby, aria-invalid)');
  await capture(page, 'login-error');
  await page.goto(`${BASE}/desk/toegankelijkheid`);
  check((await h1(page)) === 'Toegankelijkheid', 'the accessibility statement is public');
  await capture(page, 'accessibility');

  // -- A wrong password, then the right one (set by the Rust side). --
  const pwContext = await browser.createBrowserContext();
  const pw = await newPage(pwContext);
  await pw.goto(`${BASE}/desk/login`);
  await pw.type('#pw-email', USER);
  await pw.type('#password', 'not the password');
  await clickAndWait(pw, 'form[action="/desk/wachtwoord"] button');
  const pwDescribed = await pw.$eval('#password', (e) => e.getAttribute('aria-describedby'));
  check(pwDescribed === 'password-error', 'a wrong password: the message is tied to the password field');
  check(!(await session(pw)), 'a wrong password gives no session');
  await capture(pw, 'login-password-wrong');
  await pw.type('#password', env('DESK_PASSWORD'));
  await clickAndWait(pw, 'form[action="/desk/wachtwoord"] button');
  check(new URL(pw.url()).pathname === '/desk', 'the right password logs in');
  await pwContext.close();

  // -- Log in by the mailed link. --
  const before = await loginMails();
  await page.goto(`${BASE}/desk/login`);
  await page.type('#email', USER);
  await clickAndWait(page, 'form[action="/desk/login"] button');
  const knownAnswer = await text(page, 'main');
  check((await h1(page)) === 'Kijk in je mail', 'asking for a link: the "check your mail" page');
  await capture(page, 'link-sent');
  const { link: link1 } = await loginLink(before);
  await page.goto(link1);
  check((await h1(page)) === 'Inloggen op de balie', 'the mailed link opens a page with one button (a GET changes nothing)');
  await capture(page, 'login-link');
  await clickAndWait(page, 'main form button');
  check(new URL(page.url()).pathname === '/desk', 'the button logs in and opens the overview');
  const cookie = await session(page);
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict' && cookie.path === '/desk', 'the session cookie is HttpOnly, SameSite=Strict, path /desk');
  const sessionCookie = `desk_sessie=${cookie.value}`;
  check((await text(page, 'main')).includes('Vraag'), 'the overview counts what waits per category');
  check(await page.$eval('main', (m) => /Deze vraag wacht het langst/.test(m.textContent)), 'the overview shows the oldest waiting question');
  check(await page.$eval('main', (m) => /Volgende nieuwsbrief/.test(m.textContent)), 'the overview shows the next newsletter');
  await capture(page, 'overview');

  // The link again, in a browser without the session: used.
  const other = await browser.createBrowserContext();
  const p2 = await newPage(other);
  const reused = await p2.goto(link1);
  check(reused.status() === 410 && (await h1(p2)) === 'Deze link is al gebruikt', 'a used link is refused (410)');
  await capture(p2, 'link-used');
  const pre = (await p2.cookies()).find((c) => c.name === 'desk_csrf');
  const preToken = await p2.$eval('input[name="csrf"]', (e) => e.value);
  const again = await http('POST', link1, { cookie: `desk_csrf=${pre.value}`, body: `csrf=${preToken}` });
  check(again.status === 410 && !again.setCookie, 'posting a used link gives no session (410)');

  // -- Conversations: the list, search, one conversation. --
  await clickAndWait(page, 'nav a[href="/desk/gesprekken"]');
  check((await h1(page)) === 'Gesprekken', 'the conversation list');
  await capture(page, 'conversations');
  await page.type('#zoek', 'oudergesprek');
  await clickAndWait(page, 'form.filters button');
  const found = await page.$$eval('ul.cards li a', (as) => as.map((a) => a.getAttribute('href')));
  check(found.length === 1 && found[0] === `/desk/gesprekken/${Q}`, `searching "oudergesprek" finds its conversation only (${found})`);
  await page.select('#status', 'nieuw');
  await clickAndWait(page, 'form.filters button');
  check((await page.$$('ul.cards li')).length === 1, 'search and status filter together');
  await capture(page, 'conversations-search');
  await clickAndWait(page, 'ul.cards li a');
  check((await h1(page)) === 'Vraag over het oudergesprek', 'a conversation opens');
  const mailHtml = await page.$eval('.item-message .mailtext', (e) => e.innerHTML);
  check(mailHtml.includes('&lt;b&gt;') && !(await page.$('.item-message .mailtext b')), 'mail text is shown escaped: its HTML is not rendered');
  check((await page.$$('.item-auto_reply')).length === 1, 'our auto-reply shows in the conversation');
  await capture(page, 'conversation');

  // A mail written in HTML, with attachments: listed by name and size; its layout shown
  // sanitized, nothing in it run or loaded.
  const outside = [];
  const watch = (r) => { if (!r.url().startsWith(BASE)) outside.push(r.url()); };
  page.on('request', watch);
  await page.goto(`${BASE}/desk/gesprekken/${HTML}`);
  const files = await page.$$eval('.item-message .attachments li', (l) => l.map((x) => x.textContent.trim().replace(/\u00a0/g, ' ')));
  check(JSON.stringify(files) === JSON.stringify(['verslag ouderavond.pdf (2,4 kB, PDF)', 'foto.jpg (640 bytes, afbeelding)']),
    `attachments are listed by name, size and kind (${files.join(' | ')})`);
  check(!(await page.$eval('details.mail-layout', (d) => d.open)), 'the layout is behind a button; the text comes first');
  await page.click('details.mail-layout summary');
  const shown = await page.$eval('.mailhtml', (e) => ({
    lang: e.lang,
    bold: e.querySelector('b')?.textContent,
    cells: [...e.querySelectorAll('td')].map((c) => c.textContent),
    images: e.querySelectorAll('img').length,
    handlers: /\son\w+=|javascript:|<style|<script/i.test(e.innerHTML),
    links: [...e.querySelectorAll('a[href]')].map((a) => `${a.getAttribute('href')} ${a.rel}`),
  }));
  check(shown.bold === 'verslag' && shown.cells.join('|') === 'Aanwezig|24 ouders' && shown.lang === 'nl',
    'the mail with its layout: bold text and a table, in the mail\'s language');
  check(shown.images === 0 && !shown.handlers, 'no image, event handler, style, script or javascript: link survives');
  check(JSON.stringify(shown.links) === JSON.stringify(['https://example.org/agenda noopener noreferrer nofollow']),
    `only the https link stays a link, with rel="noopener noreferrer nofollow" (${shown.links})`);
  check(await page.evaluate(() => window.mailScript === undefined), 'nothing in the mail ran');
  check((await text(page, 'details.mail-layout .help')).startsWith('Afbeeldingen uit de mail tonen we niet'),
    'the page says images are not shown');
  await capture(page, 'conversation-html');
  page.off('request', watch);
  check(outside.length === 0, `nothing was loaded from outside the desk (${outside.join(' ')})`);
  await page.goto(`${BASE}/desk/gesprekken/${Q}`);

  // A note.
  await page.type('#notitie', 'Alice belt volgende week terug.');
  await clickAndWait(page, 'form[action$="/notitie"] button');
  check((await text(page, '[role="status"]')) === 'Je notitie is bewaard.', 'a note is saved');
  check((await page.$$eval('.item-note .mailtext', (n) => n.map((x) => x.textContent))).includes('Alice belt volgende week terug.'), 'the note shows in the conversation');

  // Someone notes while an answer is being written: a warning before sending.
  const convUrl = `${BASE}/desk/gesprekken/${Q}`;
  const writer = await newPage(main);
  await writer.goto(convUrl);
  await page.bringToFront();
  await page.type('#notitie', 'Ik bel haar zelf.');
  await clickAndWait(page, 'form[action$="/notitie"] button');
  await writer.bringToFront();
  await writer.type('#antwoord', 'Beste Alice,\n\nDank je voor je vraag. Begin met luisteren naar de ouders.');
  const conflict = await Promise.all([writer.waitForNavigation(), writer.click('form[action$="/antwoord"] button[name="sluit"]')]);
  check(conflict[0].status() === 409 && (await writer.$('.conflict')), 'an answer after someone else noted: the page warns and shows what is new');
  check((await writer.$$eval('.conflict .item-note .mailtext', (n) => n.map((x) => x.textContent))).includes('Ik bel haar zelf.'), 'the warning shows the new note');
  check((await writer.$eval('#antwoord', (e) => e.value)).includes('Begin met luisteren'), 'the answer is kept in the form');
  await capture(writer, 'conversation-conflict');
  await clickAndWait(writer, 'form[action$="/antwoord"] button[name="sluit"]');
  check((await text(writer, '[role="status"]')) === 'Je antwoord is verstuurd. Het gesprek is afgehandeld.', 'send and close, after the warning');
  check((await text(writer, '.facts .badge')) === 'Afgehandeld', 'the conversation is done');
  await writer.close();

  // Reopen, done.
  await page.bringToFront();
  await page.goto(convUrl);
  await clickAndWait(page, 'form[action$="/heropen"] button');
  check((await text(page, '.facts .badge')) === 'Nieuw', 'reopen: the conversation is new again');
  await clickAndWait(page, 'form[action$="/afgehandeld"] button');
  check((await text(page, '.facts .badge')) === 'Afgehandeld', 'done: the conversation is done again');

  // Move the other conversation to sign-ups, and merge the third into it.
  await page.goto(`${BASE}/desk/gesprekken/${OTHER}`);
  await page.select('#categorie', 'join');
  await clickAndWait(page, 'form[action$="/verplaats"] button');
  check((await text(page, '[role="status"]')) === 'Het gesprek is verplaatst.', 'move: recategorised');
  check(await page.$eval('.facts', (d) => d.textContent.includes('Aanmelding')), 'move: the conversation is a sign-up now');
  await page.goto(`${BASE}/desk/gesprekken/${THIRD}`);
  await page.type('#met', 'MAO-abc');
  await clickAndWait(page, 'form[action$="/samenvoegen"] button');
  check((await page.$eval('#met', (e) => e.getAttribute('aria-describedby'))).includes('met-error'), 'merge with a wrong number: the error is tied to its field');
  await capture(page, 'conversation-error');
  await page.$eval('#met', (e) => { e.value = ''; });
  await page.type('#met', `MAO-${OTHER}`);
  await clickAndWait(page, 'form[action$="/samenvoegen"] button');
  check(new URL(page.url()).pathname === `/desk/gesprekken/${OTHER}` && (await text(page, '[role="status"]')) === 'De gesprekken zijn samengevoegd.', 'merge: the third conversation joins the other');

  // -- Refusals: no CSRF token, a wrong one, a forged session cookie. --
  const noToken = await http('POST', `${BASE}/desk/gesprekken/${Q}/notitie`, { cookie: sessionCookie, body: 'body=zonder+token' });
  check(noToken.status === 403, `a POST without a CSRF token is refused (${noToken.status})`);
  const wrongToken = await http('POST', `${BASE}/desk/gesprekken/${Q}/heropen`, { cookie: sessionCookie, body: 'csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
  check(wrongToken.status === 403, 'a POST with a wrong CSRF token is refused');
  const forgedGet = await http('GET', `${BASE}/desk`, { cookie: 'desk_sessie=Zm9yZ2VkLXNlc3Npb24taWQtMDEyMzQ1Njc4OWFiY2RlZg' });
  check(forgedGet.status === 303 && forgedGet.location.startsWith('/desk/login'), 'a forged session cookie leads to the login page');
  const forgedPost = await http('POST', `${BASE}/desk/gesprekken/${Q}/heropen`, { cookie: 'desk_sessie=Zm9yZ2VkLXNlc3Npb24taWQtMDEyMzQ1Njc4OWFiY2RlZg', body: 'csrf=x' });
  check(forgedPost.status === 403, 'a POST with a forged session cookie is refused');
  await page.goto(convUrl);
  check((await text(page, '.facts .badge')) === 'Afgehandeld', 'the refused requests changed nothing');
  const refusedPage = await newPage(other);
  await refusedPage.goto(`${BASE}/desk/login`);
  await refusedPage.evaluate(() => { document.querySelector('form[action="/desk/login"] input[name="csrf"]').value = 'wrong'; });
  await refusedPage.type('#email', USER);
  await clickAndWait(refusedPage, 'form[action="/desk/login"] button');
  check((await h1(refusedPage)) === 'Dit formulier werkt niet meer', 'the login form with a wrong token is refused');
  await capture(refusedPage, 'refused');

  // -- English. --
  await page.goto(`${BASE}/desk`);
  await clickAndWait(page, 'form.lang button');
  check((await page.$eval('html', (e) => e.lang)) === 'en' && (await h1(page)) === 'Overview', 'the language switch: English');
  await capture(page, 'overview-en');
  await page.goto(convUrl);
  await capture(page, 'conversation-en');
  await clickAndWait(page, 'form.lang button');
  check((await h1(page)) === 'Vraag over het oudergesprek' && (await page.$eval('html', (e) => e.lang)) === 'nl', 'and back to Dutch, on the same page');

  // -- An expired link: asked for, then the clock moves 16 minutes on. --
  const p3 = await newPage(other);
  const before3 = await loginMails();
  await p3.goto(`${BASE}/desk/login`);
  await p3.type('#email', USER);
  await clickAndWait(p3, 'form[action="/desk/login"] button');
  const { link: link2 } = await loginLink(before3);
  setClock(new Date(Date.now() + 16 * 60 * 1000));
  // The daemon reads its clock file again within a second: open the link (a GET changes
  // nothing) until it answers as expired, 10 s at most.
  let expired = await p3.goto(link2);
  for (const deadline = Date.now() + 10000; expired.status() !== 410 && Date.now() < deadline;) {
    await new Promise((r) => setTimeout(r, 200));
    expired = await p3.goto(link2);
  }
  check(expired.status() === 410 && (await h1(p3)) === 'Deze link is verlopen', 'a link after 15 minutes is refused as expired (410)');
  await capture(p3, 'link-expired');

  // -- The same answer page for an unknown address; the rate limit. --
  await p3.goto(`${BASE}/desk/login`);
  await p3.type('#email', 'onbekend@example.org');
  await clickAndWait(p3, 'form[action="/desk/login"] button');
  check((await text(p3, 'main')) === knownAnswer, 'an unknown address gets the same answer as a known one');
  let limited = null;
  for (let i = 0; i < 6 && !limited; i++) {
    await p3.goto(`${BASE}/desk/login`);
    await p3.type('#email', 'onbekend@example.org');
    const [r] = await Promise.all([p3.waitForNavigation(), p3.click('form[action="/desk/login"] button')]);
    if (r.status() === 429) limited = i + 2;
  }
  check(limited === 6, `the sixth attempt for one address in 15 minutes is refused (429 at attempt ${limited})`);
  await capture(p3, 'limited');

  // -- The main flow by keyboard alone: log in, open a conversation, answer it. --
  const kb = await browser.createBrowserContext();
  const k = await newPage(kb);
  const before4 = await loginMails();
  await k.goto(`${BASE}/desk/login`);
  await k.keyboard.press('Tab');
  check(await k.evaluate(() => document.activeElement.matches('a.skip') && document.activeElement.getBoundingClientRect().left >= 0), 'keyboard: the first Tab shows the skip link');
  await k.keyboard.press('Enter');
  check(await k.evaluate(() => location.hash === '#inhoud'), 'keyboard: the skip link goes to the content');
  await tabTo(k, '#email');
  await k.keyboard.type(USER);
  await tabTo(k, 'form[action="/desk/login"] button');
  await enterAndWait(k);
  const { link: link3 } = await loginLink(before4);
  await k.goto(link3);
  await tabTo(k, 'main form button');
  await enterAndWait(k);
  check(new URL(k.url()).pathname === '/desk', 'keyboard: logged in');
  await tabTo(k, 'nav a[href="/desk/gesprekken"]');
  await enterAndWait(k);
  await tabTo(k, `ul.cards a[href="/desk/gesprekken/${Q}"]`);
  await enterAndWait(k);
  check((await h1(k)) === 'Vraag over het oudergesprek', 'keyboard: the conversation opens');
  await tabTo(k, '#antwoord');
  await k.keyboard.type('Nog een tip: vraag wat de ouders zelf willen.');
  await tabTo(k, 'form[action$="/antwoord"] button:not([name])');
  await enterAndWait(k);
  check((await text(k, '[role="status"]')) === 'Je antwoord is verstuurd.', 'keyboard: the answer is sent');
  await tabTo(k, 'form[action="/desk/uitloggen"] button');
  await enterAndWait(k);
  check((await text(k, '[role="status"]')) === 'Je bent uitgelogd.', 'keyboard: logged out');
  const afterLogout = await k.goto(`${BASE}/desk/gesprekken`);
  check(new URL(k.url()).pathname === '/desk/login' && afterLogout.ok(), 'after logout the desk asks for a login again');

  // -- A session lasts desk.session_hours (12 by default): 13 hours on, it has ended. --
  await page.goto(`${BASE}/desk/gesprekken`);
  check((await h1(page)) === 'Gesprekken', 'the first session still works before its time is up');
  setClock(new Date(Date.now() + 13 * 3600 * 1000));
  await page.goto(`${BASE}/desk/gesprekken`);
  for (const deadline = Date.now() + 10000; new URL(page.url()).pathname !== '/desk/login' && Date.now() < deadline;) {
    await new Promise((r) => setTimeout(r, 200));
    await page.goto(`${BASE}/desk/gesprekken`);
  }
  check(new URL(page.url()).pathname === '/desk/login', 'after desk.session_hours the session asks for a login again');
});
