// The registry pages in this folder add themselves to (see app.js, PAGES). A page file
// is listed in index.html after this one and before app.js.
"use strict";
window.WW_PAGES = window.WW_PAGES || {};
