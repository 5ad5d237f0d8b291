"""The web source: Sportlink Club and Nikki fetched by a headless browser, like a volunteer would.

- `convert`: the JSON (and Nikki's table and CSV) that the sites' own pages
  fetch, turned into the same tables the CSV readers read;
- `browser`: one Chromium (Playwright) per run, in a thread of its own;
- `sportlink`, `nikki`: logging in and downloading, with errors that name the
  page and the element when a site changes;
- `source`: `WebSportlinkSource` / `WebNikkiSource`, the same interface as
  `pipelines.sources.ExportSource` (`table(kind)`, `photos()`, `describe()`).

See docs/deploy.md ("The web source") and docs/development.md ("The web source").
"""
