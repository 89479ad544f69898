"""JavaScript that the browser tests run in the page (Playwright's `page.evaluate`): it finds the
Explorer, reads its heatmap, status line and dropdowns, and collects error outputs of the notebook.

Each constant is the source of one arrow function; the Explorer's root is marked `data-test="explorer"`
by `JS_FIND_EXPLORER`, where `JS_HEATMAP`, `JS_STATUS` and `JS_SELECT` then look for it.
"""

# The Explorer's root: the widget view that holds a dropdown labelled "method". Its overlay figure
# is the Plotly plot whose last trace is the heatmap named "map".
JS_FIND_EXPLORER = r"""
() => {
  const labelled = (root, text) => [...root.querySelectorAll('.widget-dropdown')]
      .find(d => (d.querySelector('label')?.textContent || '').trim() === text);
  const roots = [...document.querySelectorAll('.widget-vbox')].filter(v => labelled(v, 'method'));
  // the outermost such box is the Explorer itself
  const root = roots.find(r => !roots.some(o => o !== r && o.contains(r)));
  if (root) root.setAttribute('data-test', 'explorer');
  return !!root;
}
"""

JS_HEATMAP = r"""
() => {
  const root = document.querySelector('[data-test="explorer"]');
  if (!root) return null;
  for (const plot of root.querySelectorAll('.js-plotly-plot')) {
    const data = plot.data || [];
    const heat = data[data.length - 1];
    if (!heat || heat.type !== 'heatmap' || heat.name !== 'map') continue;
    let z = heat.z, flat = [], rows = 0, cols = 0;
    if (z && z.bdata !== undefined) {            // plotly's base64 typed-array encoding
      flat = [z.dtype, String(z.shape), z.bdata]; rows = parseInt(String(z.shape || '0').split(',')[0], 10);
    } else if (ArrayBuffer.isView(z)) {
      flat = Array.from(z); rows = 1; cols = flat.length;
    } else if (Array.isArray(z)) {
      rows = z.length;
      for (const row of z) { const r = Array.from(row); cols = r.length; flat.push(...r); }
    }
    const title = plot.layout && plot.layout.title
        ? (typeof plot.layout.title === 'string' ? plot.layout.title : plot.layout.title.text) : '';
    const image = data.some(t => t.type === 'image');
    const painted = plot.querySelectorAll('.heatmaplayer image, .heatmaplayer canvas, .hm').length > 0;
    return {z: JSON.stringify(flat), rows, cols, title: title || '', image, painted,
            max: flat.every(v => typeof v === 'number') ? Math.max(...flat) : null};
  }
  return null;
}
"""

JS_STATUS = r"""
() => {
  // the Explorer's last row holds the status HTML (errors) and the progress bar
  const root = document.querySelector('[data-test="explorer"]');
  const rows = root ? [...root.children].filter(c => c.classList.contains('widget-hbox')) : [];
  const last = rows[rows.length - 1];
  const html = last ? last.querySelector('.widget-html-content') : null;
  return html ? html.innerText.trim() : null;
}
"""

JS_ERROR_OUTPUTS = r"""
() => [...document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], ' +
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"], .jp-RenderedText.jp-mod-error')]
  .map(e => e.innerText).filter(t => t.trim())
"""

JS_SELECT = r"""
(label) => {
  const root = document.querySelector('[data-test="explorer"]');
  const box = [...root.querySelectorAll('.widget-dropdown')]
      .find(d => (d.querySelector('label')?.textContent || '').trim() === label);
  const select = box.querySelector('select');
  return {options: [...select.options].slice(0, 8).map(o => o.textContent),
          selected: select.options[select.selectedIndex]?.textContent || null};
}
"""

# Widget outputs that JupyterLab's widget manager replaced with an error ("Error displaying widget: model
# not found" when a model is missing after the restore of a reloaded page).
JS_WIDGET_ERRORS = r"""
() => [...document.querySelectorAll('.jp-OutputArea-output')]
  .map(e => e.innerText.trim()).filter(t => t.startsWith('Error displaying widget'))
"""
