/*!
 * Flask-Notifications inbox widget: <flask-notifications-inbox>, a custom element.
 * Plain JavaScript, no dependencies, no build step. Needs flask_notifications.js
 * (the client: its stream with polling fallback, and its request helper).
 * Rendered by the Jinja global {{ notifications_inbox() }}; docs/widget.rst.
 *
 * Attributes: hub, prefix, page-size, preferences-url, theme (light|dark|auto),
 * align (start|end), labels (JSON), headers (JSON), types (space-separated),
 * poll-interval (ms), unread (the count at render time).
 * Properties and methods: unread, connection, open(), close(), refresh().
 * Event: "unread-change" (detail.unread), bubbling out of the element.
 */
(function (global) {
  "use strict";

  var LABELS = {
    bell: "Notifications",
    unread: "{n} unread",
    heading: "Notifications",
    empty: "No notifications yet.",
    loading: "Loading\u2026",
    error: "The notifications could not be loaded.",
    loadMore: "Load more",
    markRead: "Mark read",
    markAllRead: "Mark all read",
    preferences: "Notification settings",
    unreadItem: "Unread:",
    othersOne: "{actor} and 1 other",
    othersMany: "{actor} and {n} others",
  };

  // Every colour, font and size comes from a --fn-inbox-* custom property with a default.
  var STYLE = `
:host { display: inline-block; position: relative; font: var(--fn-inbox-font, 14px/1.4 system-ui, sans-serif);
  --_fg: var(--fn-inbox-color, #1f2328); --_bg: var(--fn-inbox-background, #fff);
  --_border: var(--fn-inbox-border-color, #d0d7de); --_muted: var(--fn-inbox-muted-color, #59636e);
  --_accent: var(--fn-inbox-accent-color, #0b5cad); --_unread: var(--fn-inbox-unread-background, #eef5fc);
  --_hover: var(--fn-inbox-hover-background, #f3f5f7); }
:host([theme="dark"]) { --_fg: var(--fn-inbox-color, #e6edf3); --_bg: var(--fn-inbox-background, #1f2328);
  --_border: var(--fn-inbox-border-color, #3d444d); --_muted: var(--fn-inbox-muted-color, #9198a1);
  --_accent: var(--fn-inbox-accent-color, #6cb6ff); --_unread: var(--fn-inbox-unread-background, #172b40);
  --_hover: var(--fn-inbox-hover-background, #2a3038); }
@media (prefers-color-scheme: dark) {
  :host([theme="auto"]) { --_fg: var(--fn-inbox-color, #e6edf3); --_bg: var(--fn-inbox-background, #1f2328);
    --_border: var(--fn-inbox-border-color, #3d444d); --_muted: var(--fn-inbox-muted-color, #9198a1);
    --_accent: var(--fn-inbox-accent-color, #6cb6ff); --_unread: var(--fn-inbox-unread-background, #172b40);
    --_hover: var(--fn-inbox-hover-background, #2a3038); } }
[hidden] { display: none !important; }
.sr-only { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
button { font: inherit; cursor: pointer; }
:focus-visible { outline: 2px solid var(--_accent); outline-offset: 2px; }
.bell { position: relative; display: inline-flex; align-items: center; justify-content: center;
  width: var(--fn-inbox-bell-size, 2.25em); height: var(--fn-inbox-bell-size, 2.25em); padding: 0;
  border: 0; border-radius: var(--fn-inbox-radius, 8px); background: transparent;
  color: var(--fn-inbox-bell-color, currentColor); }
.bell svg { width: 60%; height: 60%; }
.badge { position: absolute; top: 0; right: 0; min-width: 1.4em; padding: 0 .35em; box-sizing: border-box;
  border-radius: 1em; font-size: .72em; font-weight: 600; line-height: 1.4em; text-align: center;
  background: var(--fn-inbox-badge-background, #d1242f); color: var(--fn-inbox-badge-color, #fff); }
.panel { position: absolute; top: calc(100% + 6px); right: 0; z-index: var(--fn-inbox-z-index, 1000);
  width: var(--fn-inbox-width, 22rem); max-width: calc(100vw - 1rem); color: var(--_fg); background: var(--_bg);
  border: 1px solid var(--_border); border-radius: var(--fn-inbox-radius, 8px);
  box-shadow: var(--fn-inbox-shadow, 0 8px 24px rgba(0, 0, 0, .18)); text-align: left; }
:host([align="start"]) .panel { right: auto; left: 0; }
.panel:focus { outline: none; }
.head, .foot { display: flex; align-items: center; justify-content: space-between; gap: .5em; padding: .5em .75em; }
.head { border-bottom: 1px solid var(--_border); }
.foot { border-top: 1px solid var(--_border); }
.title { font-weight: 600; }
.link { border: 0; background: none; padding: 0; color: var(--_accent); text-decoration: underline; }
.list { list-style: none; margin: 0; padding: 0; max-height: var(--fn-inbox-max-height, 24rem); overflow-y: auto; }
.item { display: flex; gap: .5em; align-items: flex-start; padding: .6em .75em; border-bottom: 1px solid var(--_border); }
.item:last-child { border-bottom: 0; }
.item:hover { background: var(--_hover); }
.item.unread { background: var(--_unread); }
.item:focus-visible { outline: 2px solid var(--_accent); outline-offset: -2px; }
.dot { flex: none; width: .5em; height: .5em; margin-top: .45em; border-radius: 50%; }
.unread .dot { background: var(--_accent); }
.content { flex: 1; min-width: 0; overflow-wrap: anywhere; }
.content > * { display: block; }
.item-title { font-weight: 600; color: inherit; }
.count { display: inline-block; margin-left: .3em; padding: 0 .4em; border-radius: 1em; font-size: .8em;
  background: var(--_border); }
.actors, time, .status { color: var(--_muted); font-size: .85em; }
.status { padding: .75em; margin: 0; }
.read { flex: none; }
`;

  var BELL =
    '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path fill="currentColor" d="M12 22a2.5 2.5 0 0 0 ' +
    "2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z" +
    '"/></svg>';

  var TEMPLATE =
    '<button type="button" class="bell" part="bell" aria-haspopup="dialog" aria-expanded="false" aria-controls="panel">' +
    BELL + '<span class="badge" part="badge" aria-hidden="true" hidden>0</span></button>' +
    '<span class="sr-only" role="status" aria-live="polite" aria-atomic="true"></span>' +
    '<div class="panel" part="panel" id="panel" role="dialog" aria-labelledby="heading" tabindex="-1" hidden>' +
    '<div class="head" part="header"><span class="title" id="heading"></span>' +
    '<button type="button" class="link mark-all" part="mark-all"></button></div>' +
    '<ul class="list" part="list" role="list" aria-labelledby="heading"></ul>' +
    '<p class="status" part="status" role="status"></p>' +
    '<div class="foot" part="footer"><button type="button" class="link more" part="load-more" hidden></button>' +
    '<a class="link prefs" part="preferences" hidden></a></div></div>';

  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (all, name) {
      return name in values ? String(values[name]) : all;
    });
  }

  function json(text, fallback) {
    if (!text) return fallback;
    try {
      var value = JSON.parse(text);
      return value && typeof value === "object" ? value : fallback;
    } catch (e) {
      return fallback;
    }
  }

  function element(tag, className, text) {
    var el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text; // textContent: titles and bodies are user input
    return el;
  }

  // A link only to a path of this site or an http(s) URL (never javascript:).
  function safeUrl(value) {
    if (typeof value !== "string" || !value) return null;
    if (value.charAt(0) === "/" && value.charAt(1) !== "/") return value;
    return /^https?:\/\//i.test(value) ? value : null;
  }

  class Inbox extends HTMLElement {
    constructor() {
      super();
      this._root = this.attachShadow({ mode: "open" });
      this._items = []; // shown items, newest first
      this._pages = 0; // pages loaded ("load more")
      this._next = null; // the next page number, or null
      this._unread = 0;
      this._liveCounts = 0; // counts from the stream: newer than an answer asked for before
      this._stale = true; // the list must be (re)loaded when opened
      this._loading = null; // the list request under way
      this._again = false; // refresh again once it is done
      this._version = 0; // bumped by each change made here: older answers are stale
      this._active = 0; // the item with tabindex=0 (roving focus)
      this._conn = null;
      this._onOutside = this._onOutside.bind(this);
    }

    get unread() {
      return this._unread;
    }

    get connection() {
      return this._conn;
    }

    connectedCallback() {
      if (this._conn) return;
      if (!global.FlaskNotifications) {
        // The client's <script defer> comes later in the page: deferred scripts all run
        // before DOMContentLoaded.
        document.addEventListener("DOMContentLoaded", () => this.connectedCallback(), { once: true });
        return;
      }
      var client = global.FlaskNotifications;
      this._labels = Object.assign({}, LABELS, json(this.getAttribute("labels"), {}));
      this._headers = json(this.getAttribute("headers"), {});
      this._prefix = this.getAttribute("prefix") || client.prefix;
      this._pageSize = Math.max(1, parseInt(this.getAttribute("page-size"), 10) || 10);
      if (!this._root.firstChild) this._render();
      this._setCount(parseInt(this.getAttribute("unread"), 10) || 0, true);
      var types = (this.getAttribute("types") || "").split(/\s+/).filter(Boolean);
      this._conn = client.connect({
        hub: this.getAttribute("hub") || "Inbox",
        prefix: this._prefix,
        types: types,
        headers: this._headers,
        pollInterval: parseInt(this.getAttribute("poll-interval"), 10) || undefined,
        onCount: (n) => {
          this._liveCounts += 1;
          this._setCount(n);
          this._changed();
        },
        onEvent: () => this._changed(),
        onPoll: () => this._reloadCount(), // no live counts when polling: ask at each poll
        onReset: () => {
          this._reloadCount();
          this._changed();
        },
        onOpen: () => {
          // Counts sent while the stream was down are not replayed, nor are events of
          // types it does not listen to: ask again.
          this._reloadCount();
          this._changed();
        },
      });
      document.addEventListener("pointerdown", this._onOutside, true);
    }

    disconnectedCallback() {
      if (this._conn) this._conn.close();
      this._conn = null;
      document.removeEventListener("pointerdown", this._onOutside, true);
    }

    // -- the DOM -----------------------------------------------------------------------

    _render() {
      var root = this._root;
      var style = element("style", null, STYLE);
      root.appendChild(style);
      var holder = element("div");
      holder.innerHTML = TEMPLATE; // constant markup: no user input in it
      while (holder.firstChild) root.appendChild(holder.firstChild);
      var $ = (selector) => root.querySelector(selector);
      this._bell = $(".bell");
      this._badge = $(".badge");
      this._live = $("[aria-live]");
      this._panel = $(".panel");
      this._list = $(".list");
      this._status = $(".status");
      this._more = $(".more");
      this._foot = $(".foot");
      this._prefs = $(".prefs");
      var labels = this._labels;
      $(".title").textContent = labels.heading;
      $(".mark-all").textContent = labels.markAllRead;
      this._more.textContent = labels.loadMore;
      var url = this.getAttribute("preferences-url");
      if (url) {
        this._prefs.href = url;
        this._prefs.textContent = labels.preferences;
        this._prefs.hidden = false;
      }
      this._foot.hidden = this._prefs.hidden;
      this._bell.addEventListener("click", () => (this._panel.hidden ? this.open() : this.close()));
      $(".mark-all").addEventListener("click", () => this._markAllRead());
      this._more.addEventListener("click", () => this._loadMore());
      root.addEventListener("keydown", (e) => this._onKey(e));
      this.addEventListener("focusout", (e) => {
        // Focus left the widget (Tab past its last control): close, focus stays where it went.
        var to = e.relatedTarget;
        if (to && to !== this && !this.contains(to)) this.close(false);
      });
    }

    _onOutside(e) {
      if (!this._panel.hidden && e.composedPath().indexOf(this) === -1) this.close(false);
    }

    _onKey(e) {
      if (e.key === "Escape" && !this._panel.hidden) {
        e.preventDefault();
        this.close(true);
        return;
      }
      var items = this._itemNodes();
      var inList = this._list.contains(this._root.activeElement);
      if (e.key === "ArrowDown" && this._root.activeElement === this._bell && this._panel.hidden) {
        e.preventDefault();
        this.open();
        return;
      }
      if (!inList || !items.length || ["ArrowDown", "ArrowUp", "Home", "End"].indexOf(e.key) === -1) return;
      e.preventDefault();
      var at = items.indexOf(this._root.activeElement.closest(".item"));
      var to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[e.key];
      this._focusItem(Math.max(0, Math.min(items.length - 1, to)));
    }

    _itemNodes() {
      return Array.prototype.slice.call(this._list.children);
    }

    _focusItem(index) {
      var items = this._itemNodes();
      if (!items.length) return;
      this._active = Math.max(0, Math.min(items.length - 1, index));
      items.forEach((li, i) => (li.tabIndex = i === this._active ? 0 : -1));
      items[this._active].focus();
    }

    _setCount(n, initial) {
      n = Math.max(0, Number(n) || 0);
      var changed = n !== this._unread;
      this._unread = n;
      this._badge.textContent = n > 99 ? "99+" : String(n);
      this._badge.hidden = n === 0;
      var name = this._labels.bell + (n ? ", " + fill(this._labels.unread, { n: n }) : "");
      this._bell.setAttribute("aria-label", name);
      this._bell.title = name;
      if (changed && !initial) this._live.textContent = name; // announced by screen readers
      if (changed) {
        this.dispatchEvent(new CustomEvent("unread-change", { bubbles: true, detail: { unread: n } }));
      }
    }

    _itemNode(item, index) {
      var labels = this._labels;
      var li = element("li", "item" + (item.read ? "" : " unread"));
      li.setAttribute("role", "listitem");
      li.setAttribute("part", item.read ? "item" : "item unread");
      li.tabIndex = index === this._active ? 0 : -1;
      li.dataset.id = item.id;
      li.appendChild(element("span", "dot")).setAttribute("aria-hidden", "true");
      var content = li.appendChild(element("div", "content"));
      if (!item.read) content.appendChild(element("span", "sr-only", labels.unreadItem));
      // A grouped item (count, actors newest first, actor_count distinct actors);
      // without actor_count, the events' count stands for the actors'.
      var count = Number(item.count) || 1;
      var actors = Array.isArray(item.actors) ? item.actors : [];
      var people = Number(item.actor_count) || Math.max(count, actors.length);
      if (actors.length && count > 1) {
        var others = Math.max(people, actors.length) - 1;
        var text = others
          ? fill(others === 1 ? labels.othersOne : labels.othersMany, { actor: actors[0], n: others })
          : String(actors[0]);
        content.appendChild(element("span", "actors", text)).setAttribute("part", "actors");
      }
      var url = safeUrl(item.client_action);
      var line = content.appendChild(element("span", "title-line"));
      var title = line.appendChild(element(url ? "a" : "span", "item-title", item.title || item.name));
      if (url) title.href = url;
      if (count > 1) {
        var badge = line.appendChild(element("span", "count", String(count)));
        badge.setAttribute("part", "count");
        badge.setAttribute("aria-label", "(" + count + ")");
      }
      if (item.body) content.appendChild(element("span", "body", item.body));
      if (item.timestamp) {
        var when = new Date(item.timestamp * 1000);
        content.appendChild(element("time", null, when.toLocaleString())).dateTime = when.toISOString();
      }
      if (!item.read) {
        var button = li.appendChild(element("button", "link read", labels.markRead));
        button.type = "button";
        button.tabIndex = index === this._active ? 0 : -1;
        button.setAttribute("part", "mark-read");
        button.setAttribute("aria-label", labels.markRead + ": " + (item.title || item.name));
        button.addEventListener("click", () => this._markRead(item));
      }
      // Only the active item's controls are in the Tab order.
      li.addEventListener("focus", () => {
        this._itemNodes().forEach((other) => {
          other.tabIndex = other === li ? 0 : -1;
          var b = other.querySelector(".read");
          if (b) b.tabIndex = other === li ? 0 : -1;
        });
        this._active = this._itemNodes().indexOf(li);
      });
      return li;
    }

    _draw() {
      var hadFocus = this._list.contains(this._root.activeElement);
      var focusedId = hadFocus ? this._root.activeElement.closest(".item").dataset.id : null;
      this._list.replaceChildren();
      this._active = Math.min(this._active, Math.max(0, this._items.length - 1));
      this._items.forEach((item, i) => this._list.appendChild(this._itemNode(item, i)));
      this._more.hidden = this._next === null;
      this._foot.hidden = this._more.hidden && this._prefs.hidden;
      this._showStatus(this._items.length ? "" : this._labels.empty);
      if (hadFocus) {
        var at = this._items.findIndex((item) => String(item.id) === focusedId);
        this._focusItem(at === -1 ? this._active : at);
      }
    }

    _showStatus(text) {
      this._status.textContent = text;
      this._status.hidden = !text;
    }

    // -- opening and closing -----------------------------------------------------------

    open() {
      if (!this._panel.hidden) return;
      this._panel.hidden = false;
      this._bell.setAttribute("aria-expanded", "true");
      this._fit();
      this._panel.focus();
      var first = () => {
        if (!this._panel.hidden && this._root.activeElement === this._panel) this._focusItem(0);
      };
      if (this._stale || !this._pages) this.refresh().then(first, () => {});
      else first();
    }

    // Flip the alignment when the panel would leave the viewport on its side.
    _fit() {
      var style = this._panel.style;
      style.left = style.right = "";
      var box = this._panel.getBoundingClientRect();
      if (box.left < 0) {
        style.left = "0";
        style.right = "auto";
      } else if (box.right > document.documentElement.clientWidth) {
        style.left = "auto";
        style.right = "0";
      }
    }

    close(focusBell) {
      if (this._panel.hidden) return;
      this._panel.hidden = true;
      this._bell.setAttribute("aria-expanded", "false");
      if (focusBell !== false) this._bell.focus();
    }

    // -- the inbox API -----------------------------------------------------------------

    _request(method, path, body) {
      return global.FlaskNotifications.request(method, this._prefix + path, body, this._headers);
    }

    _reloadCount() {
      var before = this._liveCounts;
      return this._request("GET", "/unread-count").then(
        (answer) => {
          if (this._liveCounts !== before || answer.unread === this._unread) return;
          this._setCount(answer.unread);
          this._changed(); // read or stored elsewhere, while nothing was streamed
        },
        () => {}
      );
    }

    _changed() {
      if (this._panel.hidden) this._stale = true;
      else this.refresh();
    }

    _page(number) {
      return this._request("GET", "/inbox?page=" + number + "&per_page=" + this._pageSize);
    }

    // Page 1 again, merged into what is shown: new items first, changed ones replaced
    // (same id, or same group: a group's item replaces its older one), removed ones gone.
    refresh() {
      if (this._loading) {
        this._again = true;
        return this._loading;
      }
      this._stale = false;
      this._list.setAttribute("aria-busy", "true");
      if (!this._items.length) this._showStatus(this._labels.loading);
      var version = this._version;
      this._loading = this._page(1)
        .then((page) => {
          if (version !== this._version) {
            this._again = true; // asked before a mark-read here ended: ask again
            return;
          }
          var fresh = page.items;
          var ids = new Set(fresh.map((item) => String(item.id)));
          var groups = new Set(fresh.filter((item) => item.group).map((item) => item.group));
          var oldest = fresh.length ? fresh[fresh.length - 1] : null;
          var rest = page.next === null || !oldest ? [] : this._items.filter(
            (item) => !ids.has(String(item.id)) && !(item.group && groups.has(item.group)) &&
              item.timestamp < oldest.timestamp
          );
          this._items = fresh.concat(rest);
          if (this._pages <= 1) this._next = page.next;
          else if (page.next === null) this._next = null;
          this._pages = Math.max(this._pages, 1);
          this._draw();
        })
        .catch((err) => {
          this._stale = true;
          this._showStatus(this._labels.error);
          throw err;
        })
        .finally(() => {
          this._loading = null;
          this._list.setAttribute("aria-busy", "false");
          if (this._again) {
            this._again = false;
            this.refresh().catch(() => {});
          }
        });
      return this._loading;
    }

    _loadMore() {
      if (this._loading) {
        // A refresh is under way: load more after it (it may change the next page).
        var after = () => this._loadMore();
        this._loading.then(after, after);
        return;
      }
      if (this._next === null) return;
      var before = this._items.length;
      var version = this._version;
      var retry = false;
      this._loading = this._page(this._next)
        .then((page) => {
          if (version !== this._version) {
            retry = true; // asked before a mark-read here ended: ask again
            return;
          }
          var ids = new Set(this._items.map((item) => String(item.id)));
          var groups = new Set(this._items.filter((item) => item.group).map((item) => item.group));
          page.items.forEach((item) => {
            // Items move to later pages as new ones arrive: each is shown once.
            if (ids.has(String(item.id)) || (item.group && groups.has(item.group))) return;
            this._items.push(item);
          });
          this._pages = page.page;
          this._next = page.next;
          this._draw();
          this._focusItem(before < this._items.length ? before : before - 1);
        })
        .catch(() => this._showStatus(this._labels.error))
        .finally(() => {
          this._loading = null;
          if (retry) this._loadMore();
        });
    }

    _markRead(item) {
      return this._request("POST", "/" + encodeURIComponent(item.id) + "/read", {}).then(
        () => {
          var li = this._list.querySelector('[data-id="' + item.id + '"]');
          if (li && this._root.activeElement && li.contains(this._root.activeElement)) li.focus();
          var shown = this._items.filter((other) => String(other.id) === String(item.id));
          if (shown.length ? !shown[0].read : !item.read) this._setCount(this._unread - 1);
          this._version += 1;
          shown.forEach((other) => (other.read = true));
          item.read = true;
          this._draw();
          this._reloadCount();
        },
        () => this._showStatus(this._labels.error)
      );
    }

    _markAllRead() {
      return this._request("POST", "/read-all", {}).then(
        () => {
          this._version += 1;
          this._items.forEach((item) => (item.read = true));
          this._setCount(0);
          this._draw();
          this._reloadCount();
        },
        () => this._showStatus(this._labels.error)
      );
    }
  }

  if (!global.customElements.get("flask-notifications-inbox")) {
    global.customElements.define("flask-notifications-inbox", Inbox);
  }
})(window);
