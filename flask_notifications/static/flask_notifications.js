/*!
 * Flask-Notifications browser client. Plain JavaScript, no dependencies, no build step.
 *
 *   var conn = FlaskNotifications.connect({
 *     hub: "Messages",                       // the hub label
 *     types: ["message"],                    // event types to receive (SSE event names)
 *     onEvent: function (event, type, group) {},  // each event (the event JSON, parsed);
 *                                            // group: its group key, or null
 *     list: "#notifications",                // optional: a <ul> the client keeps, newest
 *                                            // first; a group's item is updated in place
 *     renderItem: function (event, li) {},   // optional: fill a list item (default: the
 *                                            // title and, from 2 on, "(count)")
 *     onCount: function (n) {},              // "unread_count" events
 *     onReset: function () {},               // events were missed: reload your state
 *     onOpen: function () {},                // the stream (re)opened: counts are not
 *                                            //   replayed, reload them here
 *     onPoll: function () {},                // when polling: after each poll (counts
 *   });                                      //   are not polled, reload them here
 *   conn.close();
 *   FlaskNotifications.badge("#unread", 3);  // show 3; 0 hides the badge
 *   FlaskNotifications.enablePush().then(function (subscription) {});  // Web Push
 *   FlaskNotifications.disablePush();         // unsubscribe this browser
 *   FlaskNotifications.configure({            // headers of every request it makes,
 *     headers: { "X-CSRFToken": token },      // e.g. Flask-WTF's CSRF token
 *   });
 *
 * Streams with EventSource; after a failed (re)connection it opens a new
 * EventSource with ?lastEventId= so nothing is missed. When EventSource is
 * missing, or keeps failing, it polls <prefix>?since=<timestamp> instead.
 *
 * Grouped events (an event "group" field): on a hub that stores to the inbox,
 * the stream carries the recipient's updated inbox item (the newest event with
 * "count", "actors", "actor_count" and "notification_id"); elsewhere the
 * event itself, which the client counts on top of the group's last count.
 */
(function (global) {
  "use strict";

  function defaultPrefix() {
    var script = document.currentScript;
    var src = script && script.src;
    var marker = "/static/flask_notifications.js";
    if (src && src.indexOf(marker) !== -1) {
      return new URL(src, global.location.href).pathname.split(marker)[0];
    }
    return "/notifications";
  }

  var PREFIX = defaultPrefix();

  // Settings of every request the client makes (configure()).
  var settings = { headers: {} };

  function configure(options) {
    var opts = options || {};
    if ("headers" in opts) settings.headers = opts.headers || {};
    return { headers: settings.headers };
  }

  // The extra headers of a request: configure()'s, then the call's own.
  // Each may be an object or a function returning one (read at each request).
  function extraHeaders(own) {
    var result = {};
    var sources = [settings.headers, own];
    for (var i = 0; i < sources.length; i++) {
      var source = typeof sources[i] === "function" ? sources[i]() : sources[i];
      if (!source) continue;
      for (var name in source) {
        if (Object.prototype.hasOwnProperty.call(source, name)) result[name] = String(source[name]);
      }
    }
    return result;
  }

  function badge(target, count) {
    var el = typeof target === "string" ? document.querySelector(target) : target;
    if (!el) {
      return;
    }
    var n = Number(count) || 0;
    el.textContent = String(n);
    el.style.visibility = n > 0 ? "visible" : "hidden";
  }

  function countOf(data) {
    if (data && typeof data === "object") {
      if ("unread" in data) return data.unread;
      if ("count" in data) return data.count;
    }
    return data;
  }

  function connect(options) {
    var opts = options || {};
    var prefix = opts.prefix || PREFIX;
    var types = (opts.types || []).concat(["message"]);
    var onEvent = opts.onEvent || function () {};
    var onCount = opts.onCount || function () {};
    var onReset = opts.onReset || function () {};
    var onOpen = opts.onOpen || function () {};
    var onPoll = opts.onPoll || function () {};
    var pollInterval = opts.pollInterval || 10000;
    var maxFailures = opts.maxFailures || 5;
    var streamUrl = prefix + "/stream/" + encodeURIComponent(opts.hub);

    var source = null;
    var lastId = null;
    var failures = 0;
    var closed = false;
    var timer = null;
    var polling = false;
    var since = opts.since || Date.now() / 1000;
    var seen = {};
    var seenOrder = [];
    var counts = {}; // group key -> its last count known here
    var list = typeof opts.list === "string" ? document.querySelector(opts.list) : opts.list;
    var renderItem = opts.renderItem || defaultRender;

    function defaultRender(event, li) {
      var count = Number(event.count) || 1;
      li.textContent = event.title + (count > 1 ? " (" + count + ")" : "");
    }

    // The list item an event updates: its group's, unless that item was
    // another inbox item (read since: the group's next event starts a new one).
    function itemFor(event) {
      if (event.group == null) return null;
      for (var el = list.firstElementChild; el; el = el.nextElementSibling) {
        if (el.dataset.group !== String(event.group)) continue;
        var shown = el.dataset.notificationId;
        if (!shown || event.notification_id == null || shown === String(event.notification_id)) {
          return el;
        }
      }
      return null;
    }

    function show(event) {
      var li = itemFor(event);
      if (!li) {
        li = document.createElement("li");
        list.insertBefore(li, list.firstChild);
      }
      if (event.group != null) li.dataset.group = String(event.group);
      if (event.notification_id != null) li.dataset.notificationId = String(event.notification_id);
      renderItem(event, li);
    }

    function deliver(type, raw, id) {
      var data;
      try {
        data = JSON.parse(raw);
      } catch (e) {
        return;
      }
      if (data && data.event_id) {
        if (seen[data.event_id]) return;  // polled and streamed: once only
        seen[data.event_id] = true;
        seenOrder.push(data.event_id);
        if (seenOrder.length > 1000) delete seen[seenOrder.shift()];
      }
      if (type === "unread_count") {
        onCount(countOf(data));
        return;
      }
      var group = data && data.group != null ? String(data.group) : null;
      if (group !== null) {
        // An inbox item's count is the truth; an event without one adds
        // itself to the last count known here.
        if (data.count == null) data.count = (counts[group] || 0) + 1;
        counts[group] = Number(data.count) || 1;
      }
      if (list && data) show(data);
      onEvent(data, type, group);
    }

    function listen(type) {
      source.addEventListener(type, function (msg) {
        if (msg.lastEventId) lastId = msg.lastEventId;
        deliver(type, msg.data, msg.lastEventId);
      });
    }

    function openStream() {
      if (closed) return;
      var url = streamUrl + (lastId ? "?lastEventId=" + encodeURIComponent(lastId) : "");
      source = new global.EventSource(url, { withCredentials: true });
      source.onopen = function () {
        failures = 0;
        onOpen();  // also after the browser's own reconnections
      };
      source.onerror = function () {
        // The browser retries by itself while readyState is CONNECTING; a
        // CLOSED source (an HTTP error) is ours to reopen, with backoff.
        if (source.readyState !== global.EventSource.CLOSED) return;
        failures += 1;
        source = null;
        if (failures >= maxFailures) {
          startPolling();
        } else {
          timer = setTimeout(openStream, Math.min(30000, 500 * Math.pow(2, failures)));
        }
      };
      for (var i = 0; i < types.length; i++) listen(types[i]);
      listen("unread_count");
      source.addEventListener("ready", function (msg) {
        // The stream's starting point, so a reopen after an error misses nothing.
        if (msg.lastEventId) lastId = msg.lastEventId;
      });
      source.addEventListener("reset", function (msg) {
        lastId = msg.lastEventId || null;
        onReset();
      });
    }

    function poll() {
      if (closed) return;
      var xhr = new XMLHttpRequest();
      xhr.open("GET", prefix + "?since=" + encodeURIComponent(since));
      xhr.withCredentials = true;
      var headers = extraHeaders(opts.headers);
      for (var name in headers) xhr.setRequestHeader(name, headers[name]);
      xhr.onload = function () {
        if (xhr.status === 200) {
          var items = [];
          try {
            items = JSON.parse(xhr.responseText);
          } catch (e) {
            items = [];
          }
          for (var i = 0; i < items.length; i++) {
            var item = items[i];
            if (item.timestamp > since) since = item.timestamp;
            var data = item.data;
            if (item.group != null && data && typeof data === "object") {
              // A group's inbox item, as the stream would carry it.
              data.group = item.group;
              data.count = item.count;
              data.actors = item.actors;
              data.actor_count = item.actor_count;
              data.notification_id = item.id;
            }
            deliver(item.name, JSON.stringify(data), null);
          }
          onPoll();
        }
        timer = setTimeout(poll, pollInterval);
      };
      xhr.onerror = function () {
        timer = setTimeout(poll, pollInterval);
      };
      xhr.send();
    }

    function startPolling() {
      polling = true;
      if (timer) clearTimeout(timer);
      poll();
    }

    if (typeof global.EventSource === "function" && !opts.forcePolling) {
      openStream();
    } else {
      startPolling();
    }

    return {
      close: function () {
        closed = true;
        if (timer) clearTimeout(timer);
        if (source) source.close();
      },
      get lastEventId() {
        return lastId;
      },
      get polling() {
        return polling;
      },
    };
  }

  // -- Web Push ------------------------------------------------------------------

  function keyBytes(base64url) {
    var padded = base64url + "====".slice((base64url.length + 3) % 4 + 1);
    var raw = global.atob(padded.replace(/-/g, "+").replace(/_/g, "/"));
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function sameKey(a, b) {
    if (!a || !b) return false;
    var x = new Uint8Array(a);
    if (x.length !== b.length) return false;
    for (var i = 0; i < x.length; i++) if (x[i] !== b[i]) return false;
    return true;
  }

  function request(method, url, body, headers) {
    var all = extraHeaders(headers);
    if (body) all["Content-Type"] = "application/json";
    return global
      .fetch(url, {
        method: method,
        credentials: "same-origin",
        headers: all,
        body: body ? JSON.stringify(body) : undefined,
      })
      .then(function (response) {
        if (response.ok) return response.status === 204 ? null : response.json();
        return response.text().then(function (text) {
          var message;
          try {
            message = JSON.parse(text).error || text;
          } catch (e) {
            // Not JSON (an HTML error page, e.g. Flask-WTF's "The CSRF token is
            // missing."): its text, in short.
            message = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 200);
          }
          var err = new Error(method + " " + url + ": " + response.status + " " + message);
          err.status = response.status;
          throw err;
        });
      });
  }

  function pushOptions(options) {
    var opts = options || {};
    var prefix = opts.prefix || PREFIX;
    return {
      prefix: prefix,
      serviceWorker: opts.serviceWorker || prefix + "/service-worker.js",
      scope: opts.scope || prefix + "/",
      headers: opts.headers,
    };
  }

  function pushSupported() {
    return (
      "serviceWorker" in global.navigator &&
      "PushManager" in global &&
      "Notification" in global &&
      typeof global.fetch === "function"
    );
  }

  function activeWorker(registration) {
    // navigator.serviceWorker.ready never settles when the page is outside the
    // worker's scope (the default scope is <prefix>/): wait on this registration.
    if (registration.active) return Promise.resolve(registration);
    var worker = registration.installing || registration.waiting;
    return new Promise(function (resolve, reject) {
      if (!worker) return reject(new Error("the service worker did not install"));
      worker.addEventListener("statechange", function () {
        if (worker.state === "activated") resolve(registration);
        if (worker.state === "redundant") reject(new Error("the service worker failed to install"));
      });
    });
  }

  function askPermission() {
    if (global.Notification.permission === "granted") return Promise.resolve("granted");
    return new Promise(function (resolve) {
      // Older browsers take a callback, newer ones return a promise.
      var result = global.Notification.requestPermission(resolve);
      if (result && typeof result.then === "function") result.then(resolve);
    }).then(function (permission) {
      if (permission !== "granted") {
        throw new Error("notifications are not allowed (permission: " + permission + ")");
      }
      return permission;
    });
  }

  function enablePush(options) {
    if (!pushSupported()) {
      return Promise.reject(new Error("this browser does not support Web Push"));
    }
    var opts = pushOptions(options);
    var registration;
    var applicationServerKey;
    return askPermission()
      .then(function () {
        return global.navigator.serviceWorker.register(opts.serviceWorker, { scope: opts.scope });
      })
      .then(activeWorker)
      .then(function (reg) {
        registration = reg;
        return request("GET", opts.prefix + "/push-subscriptions/key", null, opts.headers);
      })
      .then(function (answer) {
        applicationServerKey = keyBytes(answer.public_key);
        return registration.pushManager.getSubscription();
      })
      .then(function (existing) {
        // A subscription made with another key cannot be reused: replace it.
        if (existing && !sameKey(existing.options.applicationServerKey, applicationServerKey)) {
          return existing.unsubscribe().then(function () {
            return null;
          });
        }
        return existing;
      })
      .then(function (existing) {
        return (
          existing ||
          registration.pushManager.subscribe({
            userVisibleOnly: true,
            applicationServerKey: applicationServerKey,
          })
        );
      })
      .then(function (subscription) {
        return request(
          "POST",
          opts.prefix + "/push-subscriptions",
          subscription.toJSON(),
          opts.headers
        ).then(function () {
          return subscription;
        });
      });
  }

  function disablePush(options) {
    if (!pushSupported()) return Promise.resolve(false);
    var opts = pushOptions(options);
    return global.navigator.serviceWorker
      .getRegistration(opts.scope)
      .then(function (registration) {
        return registration ? registration.pushManager.getSubscription() : null;
      })
      .then(function (subscription) {
        if (!subscription) return false;
        var failure = null;
        return request(
          "DELETE",
          opts.prefix + "/push-subscriptions",
          { endpoint: subscription.endpoint },
          opts.headers
        )
          .catch(function (err) {
            if (err.status !== 404) failure = err;  // 404: already gone on the server
          })
          .then(function () {
            // Unsubscribed even when the server refused (signed out...): the
            // push service then answers 410, and the server forgets it.
            return subscription.unsubscribe();
          })
          .then(function () {
            if (failure) throw failure;
            return true;
          });
      });
  }

  global.FlaskNotifications = {
    connect: connect,
    badge: badge,
    prefix: PREFIX,
    enablePush: enablePush,
    disablePush: disablePush,
    configure: configure,
    // fetch() with configure()'s headers and errors carrying .status (the inbox widget uses it)
    request: request,
  };
})(window);
