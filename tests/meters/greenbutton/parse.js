// Parse a Green Button feed with espi-parser (an independent npm package) and print, as JSON,
// every IntervalReading it finds: {start, duration, value}.
const fs = require("fs");
const espiParser = require("espi-parser");

const xml = fs.readFileSync(process.argv[2], "utf8");
const feed = espiParser(xml).feed;
const entries = Array.isArray(feed.entries) ? feed.entries : [feed.entry];
const readings = [];
let readingType = null;
for (const entry of entries) {
  const content = entry.content || {};
  if (content.ReadingType) readingType = content.ReadingType;
  const block = content.IntervalBlock;
  if (!block) continue;
  let items = block.IntervalReadings || (block.IntervalReading ? [block.IntervalReading] : []);
  for (const r of items) {
    readings.push({ start: Number(r.timePeriod.start), duration: Number(r.timePeriod.duration), value: Number(r.value) });
  }
}
process.stdout.write(JSON.stringify({ readingType, readings }));
