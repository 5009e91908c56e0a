// The desk's stories, newsletter, subscribers and privacy pages in headless Chromium,
// and the public pages (archive, confirm, unsubscribe), against a running `outreach run`
// and the real mail stack. Started by tests/it/webdesk.rs, which adds the subscribers
// and stories, makes a proof, starts the daemon, and checks the store afterwards.
// Environment:
//   DESK_URL, DESK_USER, DESK_PASSWORD   the daemon's base URL; the desk user and password
//   IMAP_PORT, MAIL_PASSWORD             the mail stack (links in mail to the public pages)
//   SCREENSHOT_DIR                       every page at 1280, 360, 320 px and 200 % zoom
//   STORY_READY, STORY_NO_CONSENT        stories to decide on: with and without consent
//   PROOF_TITLE, READY_TITLE             the title of the proof's story; of STORY_READY
//   FAILING_RECIPIENT                    a subscriber whose server refuses the newsletter
// Prints one line per check and a closing "N passed, N failed" line; exits 1 on failure.

import {
  capture, check, clickAndWait, enterAndWait, env, h1, http, newPage, run, session, tabTo, text, waitLink,
} from './lib.mjs';

const BASE = env('DESK_URL');
const USER = env('DESK_USER');
const READY = env('STORY_READY');
const NO_CONSENT = env('STORY_NO_CONSENT');
const PROOF_TITLE = env('PROOF_TITLE');
const READY_TITLE = env('READY_TITLE');
const FAILING = env('FAILING_RECIPIENT');

const status = (page) => text(page, '[role="status"]');
const errorsOf = (page) => page.$$eval('.alert li a', (as) => as.map((a) => a.getAttribute('href')));
const describedBy = (page, sel) => page.$eval(sel, (e) => [e.getAttribute('aria-describedby') || '', e.getAttribute('aria-invalid')]);

// The text of the newsletter preview's frame (the frame is sandboxed; the test reads it
// through the browser's own protocol).
async function frameText(page) {
  const handle = await page.$('iframe.preview');
  const frame = await handle.contentFrame();
  await frame.waitForFunction(() => document.readyState === 'complete' && document.body);
  return frame.evaluate(() => document.body.innerText);
}

// Reloads `url` until `ok(page)` holds (60 s at most).
async function reloadUntil(page, url, ok, what) {
  const deadline = Date.now() + 60000;
  for (;;) {
    await page.goto(url);
    if (await ok(page)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within 60 s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

await run(async (browser) => {
  const page = await newPage(browser.defaultBrowserContext());

  // -- Log in with the password (the login itself is tested in desk.mjs). --
  await page.goto(`${BASE}/desk/login`);
  await page.type('#pw-email', USER);
  await page.type('#password', env('DESK_PASSWORD'));
  await clickAndWait(page, 'form[action="/desk/wachtwoord"] button');
  check(new URL(page.url()).pathname === '/desk', 'logged in');
  const cookie = `desk_sessie=${(await session(page)).value}`;
  for (const [href, label] of [['/desk/verhalen', 'Verhalen'], ['/desk/nieuwsbrief', 'Nieuwsbrief'], ['/desk/abonnees', 'Abonnees'], ['/desk/persoon', 'Privacy']]) {
    check((await text(page, `nav a[href="${href}"]`)) === label, `the menu links to ${label}`);
  }

  // -- Stories: the list by state, one story approved, one that needs consent. --
  await clickAndWait(page, 'nav a[href="/desk/verhalen"]');
  check((await h1(page)) === 'Verhalen', 'the stories page');
  check(await page.$eval('section[aria-labelledby="groep-beslissen"]', (s, r) => !!s.querySelector(`a[href="/desk/verhalen/${r}"]`), READY), 'a story with consent waits under "Nieuw: kies jij"');
  check(await page.$eval('section[aria-labelledby="groep-toestemming"]', (s, r) => !!s.querySelector(`a[href="/desk/verhalen/${r}"]`), NO_CONSENT), 'a story without consent waits under "Wacht op toestemming"');
  const approvedGroup = await text(page, 'section[aria-labelledby="groep-goedgekeurd"]');
  check(approvedGroup.includes(PROOF_TITLE) && approvedGroup.includes('in nieuwsbrief 1'), `the proof's story is approved, in its issue (${approvedGroup})`);
  check(await page.$eval('nav a[aria-current="page"]', (a) => a.getAttribute('href')) === '/desk/verhalen', 'the menu marks where you are');
  await capture(page, 'stories');
  await clickAndWait(page, `a[href="/desk/verhalen/${READY}"]`);
  check((await h1(page)) === READY_TITLE, 'a story opens');
  check(await page.$('.story-text strong') !== null && !(await page.$('.story-text script')), 'its text is shown as the newsletter shows it: Markdown rendered, sanitised');
  await capture(page, 'story');
  // A second tab with the same story, opened before the approval.
  const stale = await newPage(browser.defaultBrowserContext());
  await stale.goto(page.url());
  await clickAndWait(page, 'form[action$="/goedkeuren"] button');
  check((await status(page)) === 'Het verhaal is goedgekeurd. Het komt in de volgende nieuwsbrief.', 'approve: the story is approved');
  check((await text(page, '.facts .badge')) === 'Goedgekeurd', 'approve: its state says so');
  check((await text(page, 'dl.record')).includes(USER), 'approve: recorded with the desk user');
  // Approving it again from the tab opened before: said in plain words.
  const again = await clickAndWait(stale, 'form[action$="/goedkeuren"] button');
  check(again.status() === 422, 'approving an approved story again is refused (422)');
  const said = await text(stale, '.field-error, [role="alert"]');
  check(said.includes('Dit kan niet meer: het is intussen al veranderd') && !said.includes('already'),
    `and the page says so in plain Dutch, without the technical reason (${said})`);
  await stale.close();

  await page.goto(`${BASE}/desk/verhalen/${NO_CONSENT}`);
  const refused = await clickAndWait(page, 'form[action$="/goedkeuren"] button');
  check(refused.status() === 422, 'approving without consent is refused (422)');
  const [consentDescribed, consentInvalid] = await describedBy(page, '#toestemming');
  check(consentDescribed.includes('toestemming-error') && consentInvalid === 'true', 'the missing consent: the error is tied to its field');
  check((await errorsOf(page)).includes('#toestemming'), 'the error is listed at the top, linking to its field');
  await capture(page, 'story-error');
  await page.type('#toestemming', 'Aan de telefoon, 3 januari');
  await clickAndWait(page, 'form[action$="/goedkeuren"] button');
  check((await text(page, '.facts .badge')) === 'Goedgekeurd', 'with how she agreed, the story is approved');

  // -- A new story: errors, a preview on submit, saved, then rejected by keyboard. --
  await page.goto(`${BASE}/desk/verhalen`);
  await clickAndWait(page, 'a[href="/desk/verhalen/nieuw"]');
  check((await h1(page)) === 'Nieuw verhaal', 'the new-story form');
  await capture(page, 'story-new');
  await clickAndWait(page, 'button[value="opslaan"]');
  const missing = await errorsOf(page);
  check(['#titel', '#ambassadeur', '#tekst'].every((f) => missing.includes(f)), `an empty form: the missing fields are listed (${missing})`);
  check((await describedBy(page, '#tekst'))[0].includes('tekst-error'), 'an empty story: the error is tied to its field');
  await capture(page, 'story-new-error');
  await page.type('#titel', 'Een nieuw verhaal van de balie');
  await page.type('#ambassadeur', 'Karim Haddou');
  await page.type('#rol', 'ouderconsulent');
  await page.type('#tekst', 'Ouders weten **veel**.\n\n<script>alert(1)</script>\n\n[Klik](javascript:alert(1)) en [lees](https://example.org/meer).');
  await page.type('#foto', 'http://niet-veilig.example/foto.jpg');
  await clickAndWait(page, 'button[value="voorbeeld"]');
  check((await describedBy(page, '#foto'))[0].includes('foto-error'), 'a photo link that is not https: the error is tied to its field');
  await page.$eval('#foto', (e) => { e.value = ''; });
  await page.type('#foto', 'https://example.org/karim.jpg');
  await page.type('#foto_alt', 'Karim in gesprek met een vader');
  await clickAndWait(page, 'button[value="voorbeeld"]');
  check((await text(page, '#voorbeeld-titel')) === 'Een nieuw verhaal van de balie', 'Voorbeeld: the preview shows above the form');
  const preview = await page.$eval('.preview-box', (b) => b.innerHTML);
  check(preview.includes('<strong>veel</strong>') && !preview.includes('<script') && !preview.includes('javascript:'), 'the preview is the sanitised HTML: Markdown, no script, no javascript: link');
  check(preview.includes('href="https://example.org/meer"'), 'an https link stays');
  check((await page.$eval('#tekst', (e) => e.value)).includes('Ouders weten'), 'the form keeps what was typed');
  await capture(page, 'story-preview');
  await clickAndWait(page, 'button[value="opslaan"]');
  check((await status(page)) === 'Het verhaal is opgeslagen. Keur het goed als het in de nieuwsbrief mag.', 'Opslaan: the story is added');
  check((await h1(page)) === 'Een nieuw verhaal van de balie', 'and shown');
  await page.bringToFront();
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  await tabTo(page, 'form[action$="/afwijzen"] button');
  await enterAndWait(page);
  check((await status(page)) === 'Het verhaal is afgewezen.', 'keyboard: the story is rejected');

  // -- The newsletter: the proof as it will look, approved; the status per recipient. --
  await clickAndWait(page, 'nav a[href="/desk/nieuwsbrief"]');
  check((await h1(page)) === 'Nieuwsbrief', 'the newsletter page');
  check((await text(page, 'main')).includes('Er staat een proef klaar'), 'the proof that waits is shown');
  check(await page.$eval('iframe.preview', (f) => f.hasAttribute('sandbox') && f.getAttribute('title').length > 0), 'the HTML version is in a sandboxed frame with a title');
  check((await frameText(page)).includes(PROOF_TITLE), 'the frame shows the issue as it will look');
  check((await text(page, 'pre.mailtext')).includes(PROOF_TITLE) && (await text(page, 'pre.mailtext')).includes('Beste lezer'), 'and the text version');
  const frameSrc = await page.$eval('iframe.preview', (f) => f.getAttribute('src'));
  const framed = await http('GET', `${BASE}${frameSrc}`, { cookie });
  const csp = framed.headers.get('content-security-policy') || '';
  check(framed.status === 200 && csp.startsWith('sandbox') && !csp.includes('script') && csp.includes("frame-ancestors 'self'"), `the preview has its own strict policy (${csp})`);
  check((await http('GET', `${BASE}${frameSrc}`)).status === 303, 'the preview needs a login');
  await capture(page, 'newsletter');
  await clickAndWait(page, 'a[href="/desk/nieuwsbrief?taal=en"]');
  check((await text(page, 'pre.mailtext')).includes('Dear reader'), 'the English version');
  check((await page.$eval('iframe.preview', (f) => f.getAttribute('src'))).endsWith('?taal=en'), 'the frame shows the English version too');
  await clickAndWait(page, 'form[action$="/goedkeuren"] button');
  check((await status(page)) === 'De nieuwsbrief is goedgekeurd. Hij gaat binnen een minuut naar alle abonnees.', 'approve the proof');
  const issueUrl = page.url().split('?')[0];
  check((await text(page, 'main')).includes(`door ${USER}`), 'the approval is recorded with the desk user');
  await reloadUntil(page, issueUrl, async (p) => (await text(p, '.facts .badge')) === 'verstuurd', 'the issue is sent');
  check(await page.$eval('table.counts', (t) => /verstuurd\s*2/.test(t.textContent) && /mislukt\s*1/.test(t.textContent)), 'per recipient: 2 sent, 1 failed');
  check((await text(page, 'ul.cards')).includes(FAILING), 'the recipient who did not get it is listed');
  await capture(page, 'issue');
  await clickAndWait(page, 'form[action$="/opnieuw"] button');
  check((await status(page)) === 'We sturen de nieuwsbrief nog een keer naar wie hem niet kreeg.', 'send to those who did not get it');

  // The next issue: the stories approved above, as they will look.
  await page.goto(`${BASE}/desk/nieuwsbrief`);
  check((await text(page, 'main')).includes('Zo ziet de nieuwsbrief eruit met de verhalen die nu goedgekeurd zijn'), 'the next issue is previewed');
  check((await frameText(page)).includes(READY_TITLE), 'with the story approved here');
  check((await text(page, 'ul.cards')).includes(PROOF_TITLE), 'the sent issue is in the list');
  await capture(page, 'newsletter-next');

  // -- Subscribers: search, one with the consent record, removed; adding someone. --
  await clickAndWait(page, 'nav a[href="/desk/abonnees"]');
  check((await h1(page)) === 'Abonnees', 'the subscribers page');
  await capture(page, 'subscribers');
  await page.type('#zoek', 'boer');
  await clickAndWait(page, 'form.filters button');
  const found = await page.$$eval('ul.cards li a', (as) => as.map((a) => a.textContent));
  check(found.length === 1 && found[0] === 'bob@example.org', `searching "boer" finds Bob by his name (${found})`);
  await clickAndWait(page, 'ul.cards li a');
  check((await text(page, 'dl.record')).includes('cli: paper form'), 'the consent record shows how he agreed');
  await capture(page, 'subscriber');
  await clickAndWait(page, 'form[action$="/afmelden"] button');
  check((await status(page)) === 'Afgemeld. Deze persoon krijgt de nieuwsbrief niet meer.' && (await text(page, '.facts .badge')) === 'Afgemeld', 'remove: Bob is unsubscribed');
  check((await text(page, 'dl.record')).includes(`op de balie, door ${USER}`), 'remove: recorded with the desk user');

  await page.goto(`${BASE}/desk/abonnees`);
  await clickAndWait(page, 'form[action="/desk/abonnees/nieuw"] button');
  const addErrors = await errorsOf(page);
  check(addErrors.includes('#abonnee-email') && addErrors.includes('#hoe-mail'), `adding without address or how they agreed is refused (${addErrors})`);
  check(await page.$eval('fieldset', (f) => f.getAttribute('aria-describedby') === 'hoe-error'), 'the choice\'s error is tied to its group');
  await capture(page, 'subscribers-error');
  await page.type('#abonnee-email', 'dirk@elders.example');
  await page.click('#hoe-ja');
  await clickAndWait(page, 'form[action="/desk/abonnees/nieuw"] button');
  check((await describedBy(page, '#toestemming'))[0].includes('toestemming-error'), 'said yes already, but not how: the error is tied to the field');
  await page.type('#toestemming', 'formulier op de bijeenkomst');
  await clickAndWait(page, 'form[action="/desk/abonnees/nieuw"] button');
  check((await status(page)) === 'Aangemeld. Deze persoon krijgt de nieuwsbrief vanaf nu.', 'added with consent: active at once');
  await page.goto(`${BASE}/desk/abonnees`);
  await page.type('#abonnee-email', 'carla@elders.example');
  await page.type('#abonnee-naam', 'Carla');
  await page.click('#hoe-mail');
  await clickAndWait(page, 'form[action="/desk/abonnees/nieuw"] button');
  check((await status(page)).startsWith('We hebben een mail gestuurd.') && (await text(page, '.facts .badge')) === 'Wacht op bevestiging', 'added by mail: pending (double opt-in)');
  const csv = await http('GET', `${BASE}/desk/abonnees/export.csv`, { cookie });
  check(csv.status === 200 && /attachment; filename="abonnees.csv"/.test(csv.headers.get('content-disposition')) && csv.headers.get('content-type').startsWith('text/csv'), 'export: a CSV download');
  check(csv.text.startsWith('email,name,language,status,source,consent_source,consent_at') && csv.text.includes('bob@example.org,Bob de Boer,nl,unsubscribed') && csv.text.includes(`dirk@elders.example,,nl,active,desk: ${USER},desk: ${USER}: formulier op de bijeenkomst`), 'export: every subscriber with the consent record');

  // -- Privacy: what is kept about a person, the download, the erasure. --
  await clickAndWait(page, 'nav a[href="/desk/persoon"]');
  await capture(page, 'person');
  await page.type('#adres', 'Alice@Example.org');
  await clickAndWait(page, 'form.filters button');
  check((await text(page, '#gevonden-kop')).includes('alice@example.org') && (await text(page, 'main')).includes('Aanmeldingen voor de nieuwsbrief: 1'), 'a person: what is kept, in words');
  await capture(page, 'person-found');
  const token = await page.$eval('form[action="/desk/persoon/export"] input[name="csrf"]', (e) => e.value);
  const exported = await http('POST', `${BASE}/desk/persoon/export`, { cookie, body: `csrf=${encodeURIComponent(token)}&adres=alice%40example.org` });
  check(exported.status === 200 && /attachment; filename="persoon.json"/.test(exported.headers.get('content-disposition')), 'export: a JSON download');
  const person = JSON.parse(exported.text);
  check(person.address === 'alice@example.org' && person.found === true && person.subscribers.length === 1, 'export: everything stored about her, as `person export --json`');
  const noToken = await http('POST', `${BASE}/desk/persoon/export`, { cookie, body: 'adres=alice%40example.org' });
  check(noToken.status === 403, 'export without the CSRF token is refused');

  await page.goto(`${BASE}/desk/persoon?adres=bob%40example.org`);
  await page.type('#bevestig', 'alice@example.org');
  const mismatch = await clickAndWait(page, 'form[action="/desk/persoon/wissen"] button');
  check(mismatch.status() === 422 && (await describedBy(page, '#bevestig'))[0].includes('bevestig-error'), 'erase with another address typed: refused, the error tied to its field');
  await capture(page, 'person-erase-error');
  await page.$eval('#bevestig', (e) => { e.value = ''; });
  await page.type('#bevestig', 'BOB@Example.org');
  await clickAndWait(page, 'form[action="/desk/persoon/wissen"] button');
  check((await h1(page)) === 'Gewist' && (await text(page, '[role="status"]')).includes('bob@example.org'), 'erase: Bob is erased');
  await capture(page, 'person-erased');
  await page.goto(`${BASE}/desk/persoon?adres=bob%40example.org`);
  check((await text(page, 'main')).includes('Dit adres is eerder op verzoek gewist'), 'afterwards only the erasure is known');

  // -- In English. --
  await page.goto(`${BASE}/desk/verhalen`);
  await clickAndWait(page, 'form.lang button');
  check((await h1(page)) === 'Stories', 'the stories page in English');
  await capture(page, 'stories-en');
  await page.goto(`${BASE}/desk/nieuwsbrief`);
  check((await h1(page)) === 'Newsletter', 'the newsletter page in English');
  await capture(page, 'newsletter-en');
  await page.goto(`${BASE}/desk/abonnees`);
  await capture(page, 'subscribers-en');
  await page.goto(`${BASE}/desk/persoon`);
  await capture(page, 'person-en');
  await clickAndWait(page, 'form.lang button');
  check((await h1(page)) === 'Privacy: gegevens van één persoon', 'back to Dutch');

  // -- The public pages: the archive, confirming, unsubscribing. --
  const visitor = await newPage(await browser.createBrowserContext());
  await visitor.goto(`${BASE}/archive`);
  check((await h1(visitor)).length > 0 && (await visitor.$$('main a')).length === 1, 'the archive lists the sent issue');
  await capture(visitor, 'public-archive');
  await clickAndWait(visitor, 'main a');
  check((await visitor.$eval('body', (b) => b.innerText)).includes(PROOF_TITLE), 'an archived issue');
  await capture(visitor, 'public-archive-issue');
  const { link: confirm } = await waitLink('catchall@example.org', /https?:\/\/\S+\/confirm\/[A-Za-z0-9_-]{20,}/);
  await visitor.goto(confirm);
  check((await h1(visitor)) === 'Bevestig je aanmelding', 'the confirmation page');
  await capture(visitor, 'public-confirm');
  await tabTo(visitor, 'main form button');
  await enterAndWait(visitor);
  check((await h1(visitor)) === 'Je aanmelding is bevestigd', 'keyboard: confirmed');
  await capture(visitor, 'public-confirmed');
  const { link: unsubscribe } = await waitLink('alice@example.org', /https?:\/\/\S+\/unsubscribe\/[A-Za-z0-9_-]{20,}/);
  await visitor.goto(unsubscribe);
  check((await h1(visitor)) === 'Afmelden voor de nieuwsbrief', 'the unsubscribe page');
  await capture(visitor, 'public-unsubscribe');
  await clickAndWait(visitor, 'main form button');
  await capture(visitor, 'public-unsubscribed');
  await visitor.goto(`${BASE}/confirm/bm90LWEtcmVhbC10b2tlbi1hdC1hbGwtMDEyMzQ1Njc4OQ`);
  await capture(visitor, 'public-link-invalid');
  await visitor.goto(`${BASE}/archive/999`);
  await capture(visitor, 'public-not-found');
});
