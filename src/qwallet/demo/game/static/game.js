// Silver Kingdom: the demo game's client. Vanilla JS, no dependencies.
//
// The platform opens this page in an iframe with ?token=…&language=…&currency=…. Every action
// goes to the game's own backend (/api/*), which calls the platform's Wallet API through the
// partner kit. Real-money packs are bought by posting the purchase message (spec §2.2) to the
// parent page, which runs the payment; the platform then calls the backend's /pay/quantum and the
// pack shows up in the inventory (polled).
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("game-config").textContent);
  var params = new URLSearchParams(window.location.search);
  var token = params.get("token") || "";
  var language = (params.get("language") || navigator.language || "en").slice(0, 2).toLowerCase();
  var currency = params.get("currency") || "XAG";
  var embedded = window.parent !== window;
  var POLL_MS = 3000;
  var FAST_POLL_MS = 1000;
  var knownGrants = null;
  var fastPollUntil = 0;
  var pollTimer = null;

  var TEXT = {
    en: {
      shop: "Shop", shopHint: "Paid from your platform wallet.", bonus: "Bonus", claim: "Claim",
      packs: "Treasure packs", inventory: "Inventory", empty: "Nothing yet — buy something!",
      buy: "Buy", owned: "Owned", bought: "You bought: ", bonusOk: "Bonus received: ",
      noSession: "Open this game from the platform's lobby.", notEmbedded:
        "Real-money packs are bought on the platform's game page.", pay: "Complete the payment in the dialog.",
      delivered: "Delivered: ", waiting: "waiting for payment", hello: "Hi, "
    },
    de: {
      shop: "Laden", shopHint: "Bezahlt aus deinem Plattform-Guthaben.", bonus: "Bonus", claim: "Abholen",
      packs: "Schatzpakete", inventory: "Inventar", empty: "Noch leer — kauf etwas!",
      buy: "Kaufen", owned: "Im Besitz", bought: "Gekauft: ", bonusOk: "Bonus erhalten: ",
      noSession: "Öffne das Spiel über die Lobby der Plattform.", notEmbedded:
        "Echtgeld-Pakete werden auf der Spielseite der Plattform gekauft.", pay: "Schließe die Zahlung im Dialog ab.",
      delivered: "Geliefert: ", waiting: "wartet auf Zahlung", hello: "Hallo, "
    },
    fr: {
      shop: "Boutique", shopHint: "Payé avec votre portefeuille.", bonus: "Bonus", claim: "Réclamer",
      packs: "Packs trésor", inventory: "Inventaire", empty: "Rien pour l'instant — achetez quelque chose !",
      buy: "Acheter", owned: "Possédé", bought: "Acheté : ", bonusOk: "Bonus reçu : ",
      noSession: "Ouvrez ce jeu depuis le lobby de la plateforme.", notEmbedded:
        "Les packs s'achètent sur la page de jeu de la plateforme.", pay: "Terminez le paiement dans la fenêtre.",
      delivered: "Livré : ", waiting: "paiement en attente", hello: "Salut, "
    }
  };
  var t = TEXT[language] || TEXT.en;

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  var toastTimer = null;
  function toast(text, kind) {
    var node = $("toast");
    node.textContent = text;
    node.className = "toast " + (kind || "");
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { node.hidden = true; }, 3500);
  }

  function api(path, body) {
    var payload = Object.assign({ token: token }, body || {});
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.message || ("HTTP " + response.status));
          error.data = data;
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  function showBalance(balance) {
    if (!balance) return;
    $("balance").textContent = balance.amount;
    $("currency").textContent = balance.currencyCode;
    var pill = $("balance").parentNode;
    pill.classList.add("flash");
    setTimeout(function () { pill.classList.remove("flash"); }, 400);
  }

  function refreshBalance() {
    return api("/api/balance").then(function (data) { showBalance(data.balance); }, function () {});
  }

  function fail(error) {
    if (error.data && error.data.balance) showBalance(error.data.balance);
    if (error.status === 401) showNoSession(error.message);
    toast(error.message || String(error), "bad");
  }

  // -- rendering ---------------------------------------------------------------------------

  var itemsById = {};
  var packsById = {};

  function card(entry, priceText, button) {
    var li = el("li", "card");
    li.appendChild(el("div", "icon", entry.icon));
    var text = el("div");
    text.appendChild(el("div", "name", entry.name));
    text.appendChild(el("div", "desc", entry.description));
    li.appendChild(text);
    button.appendChild(el("span", "", priceText));
    li.appendChild(button);
    return li;
  }

  function renderShop(catalog) {
    var shop = $("shop-items");
    shop.textContent = "";
    catalog.items.forEach(function (item) {
      itemsById[item.id] = item;
      var button = el("button", "btn");
      button.dataset.itemId = item.id;
      button.setAttribute("data-testid", "buy-" + item.id);
      button.addEventListener("click", function () { buyItem(item, button); });
      shop.appendChild(card(item, item.price + " " + item.currencyCode, button));
    });
    var packs = $("packs");
    packs.textContent = "";
    catalog.packs.forEach(function (pack) {
      packsById[pack.id] = pack;
      var button = el("button", "btn gold");
      button.setAttribute("data-testid", "pack-" + pack.id);
      button.addEventListener("click", function () { buyPack(pack, button); });
      packs.appendChild(card(pack, pack.price, button));
    });
    $("bonus-amount").textContent = "+" + config.bonusAmount + " " + currency;
  }

  function renderInventory(data) {
    var bag = $("inventory");
    var fresh = {};
    // Pack-only items (gems, chests) are not in the shop: learn their names before announcing.
    data.items.forEach(function (item) { itemsById[item.id] = itemsById[item.id] || item; });
    if (knownGrants !== null) {
      data.grants.forEach(function (grant) {
        if (!knownGrants[grant.grantId]) {
          fresh[grant.itemId] = true;
          if (grant.source === "pack") {
            toast(t.delivered + grant.quantity + " × " + (itemsById[grant.itemId] || { name: grant.itemId }).name, "ok");
            refreshBalance();
          }
        }
      });
    }
    knownGrants = {};
    data.grants.forEach(function (grant) { knownGrants[grant.grantId] = true; });

    bag.textContent = "";
    var total = 0;
    data.items.forEach(function (item) {
      var li = el("li", fresh[item.id] ? "new" : "");
      li.setAttribute("data-item", item.id);
      li.appendChild(el("span", "icon", item.icon));
      li.appendChild(el("span", "", item.name));
      li.appendChild(el("span", "qty", "×" + item.quantity));
      bag.appendChild(li);
      total += item.quantity;
    });
    $("inventory-empty").hidden = data.items.length > 0;
    $("inventory-count").textContent = total ? "(" + total + ")" : "";

    // Unique items already owned cannot be bought again.
    document.querySelectorAll("#shop-items button").forEach(function (button) {
      var item = itemsById[button.dataset.itemId];
      var owned = data.items.some(function (i) { return i.id === button.dataset.itemId; });
      if (item && item.unique) {
        button.disabled = owned;
        if (owned) button.lastChild.textContent = t.owned;
      }
    });

    var orders = $("orders");
    orders.textContent = "";
    data.orders.filter(function (o) { return o.status === "waiting"; }).slice(0, 3).forEach(function (order) {
      var pack = packsById[order.packId];
      orders.appendChild(el("li", "", (pack ? pack.name : order.packId) + " — " + t.waiting));
    });
  }

  function refreshInventory() {
    return api("/api/inventory").then(renderInventory, function (error) {
      if (error.status === 401) showNoSession(error.message);
    });
  }

  function schedulePoll() {
    clearTimeout(pollTimer);
    var delay = Date.now() < fastPollUntil ? FAST_POLL_MS : POLL_MS;
    pollTimer = setTimeout(function () {
      var work = document.hidden ? Promise.resolve() : refreshInventory();
      work.then(schedulePoll, schedulePoll);
    }, delay);
  }

  // -- actions -----------------------------------------------------------------------------

  function busy(button, on) {
    button.disabled = on;
    button.classList.toggle("busy", on);
  }

  function buyItem(item, button) {
    busy(button, true);
    api("/api/buy", { itemId: item.id }).then(function (data) {
      showBalance(data.balance);
      toast(t.bought + data.item.name, "ok");
      return refreshInventory();
    }, fail).then(function () {
      if (!(item.unique && button.lastChild.textContent === t.owned)) busy(button, false);
    });
  }

  function claimBonus() {
    var button = $("claim-bonus");
    busy(button, true);
    api("/api/bonus").then(function (data) {
      if (data.balance) showBalance(data.balance); else refreshBalance();
      toast(t.bonusOk + "+" + data.amount.amount + " " + data.amount.currencyCode, "ok");
    }, fail).then(function () { busy(button, false); });
  }

  function buyPack(pack, button) {
    if (!embedded) {
      toast(t.notEmbedded, "bad");
      return;
    }
    busy(button, true);
    api("/api/orders", { packId: pack.id }).then(function (data) {
      // The purchase message of spec §2.2, only ever to the platform's origin.
      window.parent.postMessage(data.message, config.platformOrigin);
      fastPollUntil = Date.now() + 120000;
      toast(t.pay);
      return refreshInventory().then(schedulePoll);
    }, fail).then(function () { busy(button, false); });
  }

  // The platform page may tell us the payment went through: refresh at once.
  window.addEventListener("message", function (event) {
    if (event.origin !== config.platformOrigin) return;
    refreshInventory();
    refreshBalance();
  });

  // -- start -------------------------------------------------------------------------------

  function showNoSession(text) {
    $("game").hidden = true;
    $("player").hidden = true;
    $("no-session").hidden = false;
    $("no-session-text").textContent = text || t.noSession;
    clearTimeout(pollTimer);
  }

  document.querySelectorAll("[data-i18n]").forEach(function (node) {
    var key = node.getAttribute("data-i18n");
    if (t[key]) node.textContent = t[key];
  });
  document.documentElement.lang = language;
  $("currency").textContent = currency;
  $("claim-bonus").addEventListener("click", claimBonus);

  if (!token) {
    showNoSession(t.noSession);
    return;
  }
  renderShop(config.catalog);
  api("/api/session").then(function (session) {
    $("nickname").textContent = t.hello + session.nickname;
    showBalance(session.balance);
    $("player").hidden = false;
    $("game").hidden = false;
    return refreshInventory();
  }).then(schedulePoll, function (error) { showNoSession(error.message); });
})();
