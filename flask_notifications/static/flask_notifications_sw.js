/*!
 * Flask-Notifications service worker: shows Web Push notifications.
 *
 * Served at <prefix>/service-worker.js and registered by
 * FlaskNotifications.enablePush(). To add it to a service worker of your own:
 *
 *   importScripts("/notifications/service-worker.js");
 *
 * Each push carries the JSON that WebPushConsumer sends:
 *   {"title": ..., "body": ..., "icon": ..., "badge": ..., "tag": ...,
 *    "url": ..., "client_action": ..., "data": {...}}
 * A click opens "url" (or focuses a window already showing it).
 */
/* eslint-env serviceworker */
(function (self) {
  "use strict";

  function parse(event) {
    if (!event.data) return {};
    try {
      return event.data.json();
    } catch (e) {
      return { body: event.data.text() };
    }
  }

  self.addEventListener("push", function (event) {
    var payload = parse(event);
    var data = payload.data || {};
    data.url = payload.url || null;
    data.client_action = payload.client_action || null;
    var options = { body: payload.body || "", data: data };
    if (payload.icon) options.icon = payload.icon;
    if (payload.badge) options.badge = payload.badge;
    if (payload.tag) options.tag = payload.tag;
    if (payload.timestamp) options.timestamp = payload.timestamp * 1000;
    event.waitUntil(self.registration.showNotification(payload.title || "", options));
  });

  self.addEventListener("notificationclick", function (event) {
    event.notification.close();
    var data = event.notification.data || {};
    var target = new URL(data.url || "/", self.location.origin).href;
    event.waitUntil(
      self.clients
        .matchAll({ type: "window", includeUncontrolled: true })
        .then(function (windows) {
          for (var i = 0; i < windows.length; i++) {
            if (windows[i].url === target && "focus" in windows[i]) {
              return windows[i].focus();
            }
          }
          if (self.clients.openWindow) return self.clients.openWindow(target);
          return null;
        })
    );
  });
})(self);
