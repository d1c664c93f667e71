// Opens a report.html in headless Chromium (playwright-core), blocks every network request, screenshots
// the page and prints what rendered as JSON: sections, tables, each image's size and inked pixels, what
// overflows the viewport, whether table headers are sticky, errors.
// usage: node render_check.js PLAYWRIGHT_CORE_DIR REPORT_HTML SCREENSHOT_PNG [WIDTH]
const [playwrightDir, htmlPath, screenshotPath, widthArg] = process.argv.slice(2);
const width = Number(widthArg || 1280);
const { chromium } = require(playwrightDir);

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  const requests = [];
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e}`));
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:')) return route.continue();
    requests.push(url);  // a self-contained report asks for nothing
    return route.abort();
  });
  await page.goto('file://' + htmlPath, { waitUntil: 'load' });
  const info = await page.evaluate(async () => {
    const tables = {};
    for (const t of document.querySelectorAll('table')) {
      tables[t.id] = [...t.querySelectorAll('tbody tr')].map((tr) => ({
        cls: tr.className, cells: [...tr.cells].map((c) => c.textContent) }));
    }
    const images = [];
    for (const img of document.images) {
      await img.decode().catch(() => null);
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      let inked = 0;
      if (img.naturalWidth > 0) {
        const ctx = canvas.getContext('2d');
        ctx.fillStyle = 'white'; ctx.fillRect(0, 0, canvas.width, canvas.height);
        ctx.drawImage(img, 0, 0);
        const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < data.length; i += 4) if (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200) inked++;
      }
      const box = img.getBoundingClientRect();
      images.push({ alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
                    naturalHeight: img.naturalHeight, shownWidth: box.width, right: box.right, inked });
    }
    const viewport = document.documentElement.clientWidth;
    const overflowing = [...document.body.querySelectorAll('*')]
      .filter((el) => el.getBoundingClientRect().right > viewport + 0.5)
      .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`);
    const sticky = [...document.querySelectorAll('table')].map((t) => {
      const th = t.querySelector('thead th');
      return { id: t.id, position: th ? getComputedStyle(th).position : null };
    });
    const sections = [...document.querySelectorAll('h2')].map((h) => h.textContent);
    return { title: document.title, tables, images, scripts: document.scripts.length, sections, sticky, viewport,
             scrollWidth: document.documentElement.scrollWidth, overflowing };
  });
  await page.screenshot({ path: screenshotPath, fullPage: true });
  await browser.close();
  console.log(JSON.stringify({ ...info, errors, requests }));
})().catch((e) => { console.error(e); process.exit(1); });
