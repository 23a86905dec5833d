// Any route this UI does not know.

import { html, setHtml } from "../dom.js";

export async function mount(root, ctx) {
  document.title = "Not found · edgewatch";
  setHtml(
    root,
    html`<section class="card">
      <h1>Nothing here</h1>
      <p>This address is not a page of edgewatch. <a href="#/">Go to the hosts overview.</a></p>
    </section>`,
  );
  ctx.ready();
}
