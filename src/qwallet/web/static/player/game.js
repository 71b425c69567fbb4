// The game page: balance polling, purchase messages from the game's iframe, the payment dialog.
// Messages are accepted only from the iframe itself AND from the game's origin (spec §2.2).
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("game-config").textContent);
  var frame = document.getElementById("game");
  var dialog = document.getElementById("pay-dialog");
  var balance = document.getElementById("balance-amount");
  var statusLine = document.getElementById("pay-status");
  var methodsBox = document.getElementById("pay-methods");
  var current = null; // the order shown in the dialog
  var pollTimer = null;

  var TEXT_LIMITS = { productName: 128, productDesc: 255 };
  var MAX_PRODUCT_NUMBER = 10000;

  function request(method, url, body) {
    var options = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = config.csrf;
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.message || ("Request failed (" + response.status + ")"));
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  function refreshBalance() {
    return request("GET", "/me/balance").then(function (data) {
      balance.textContent = data.balance;
    }).catch(function () { /* the next poll will try again */ });
  }
  setInterval(refreshBalance, config.balancePollMs);

  // -- validation of the game's message ----------------------------------------------------

  function fail(message) { throw new Error(message); }

  function requiredId(data, name) {
    var value = data[name];
    if (typeof value !== "string" || value.length < 1 || value.length > 64) {
      fail(name + " must be a string of 1-64 characters");
    }
    return value;
  }

  function decimalsOf(number) {
    var text = String(number);
    if (/e/i.test(text)) { return Infinity; }
    var dot = text.indexOf(".");
    return dot < 0 ? 0 : text.length - dot - 1;
  }

  // Returns the purchase fields, null when the message is not a purchase, or throws.
  function purchaseFrom(data) {
    if (typeof data === "string") {
      try { data = JSON.parse(data); } catch (e) { return null; }
    }
    if (data === null || typeof data !== "object" || Array.isArray(data) || !("cpOrderId" in data)) {
      return null;
    }
    var fields = {};
    if (typeof data.serverId !== "number" || !Number.isFinite(data.serverId) || data.serverId < 0) {
      fail("serverId must be a non-negative number");
    }
    fields.serverId = data.serverId;
    fields.cpOrderId = requiredId(data, "cpOrderId");
    fields.productId = requiredId(data, "productId");
    Object.keys(TEXT_LIMITS).forEach(function (name) {
      var value = data[name];
      if (value === undefined || value === null) { return; }
      if (typeof value !== "string" || value.length > TEXT_LIMITS[name]) {
        fail(name + " must be a string of at most " + TEXT_LIMITS[name] + " characters");
      }
      fields[name] = value;
    });
    var number = data.productNumber === undefined || data.productNumber === null ? 1 : data.productNumber;
    if (!Number.isInteger(number) || number < 1 || number > MAX_PRODUCT_NUMBER) {
      fail("productNumber must be an integer from 1 to " + MAX_PRODUCT_NUMBER);
    }
    fields.productNumber = number;
    var price = data.productPrice;
    if (typeof price !== "number" || !Number.isFinite(price) || price <= 0) {
      fail("productPrice must be a number greater than zero");
    }
    if (decimalsOf(price) > config.paymentDecimals) {
      fail("productPrice has more than " + config.paymentDecimals + " decimals");
    }
    fields.productPrice = price;
    if (typeof data.extParams !== "string" || data.extParams.length > 1024) {
      fail("extParams must be a string of at most 1024 characters");
    }
    fields.extParams = data.extParams;
    return fields;
  }

  // -- the dialog ------------------------------------------------------------------------------

  function tellGame(order) {
    frame.contentWindow.postMessage(
      { type: "qw.payment", orderId: order.orderId, cpOrderId: order.cpOrderId, state: order.state },
      config.gameOrigin
    );
  }

  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.className = "status" + (kind ? " " + kind : "");
  }

  function button(label, className, testId, onClick) {
    var element = document.createElement("button");
    element.type = "button";
    element.textContent = label;
    element.className = className;
    element.dataset.testid = testId;
    element.addEventListener("click", onClick);
    return element;
  }

  function showOrder(order, methods) {
    current = order;
    document.getElementById("pay-product").textContent = order.productName || order.productId;
    document.getElementById("pay-price").textContent = order.productPrice + " " + order.currency;
    document.getElementById("pay-quantity").textContent = String(order.productNumber);
    document.getElementById("pay-total").textContent = order.amount + " " + order.currency;
    document.getElementById("pay-description").textContent = order.productDesc || "";
    methodsBox.textContent = "";
    if (order.payable) {
      methods.forEach(function (method) {
        if (method.options && method.options.length) {
          method.options.forEach(function (option) {
            methodsBox.appendChild(button(
              method.label + ": " + option, option === "decline" ? "danger" : "",
              "pay-" + method.method + "-" + option,
              function () { pay(method.method, option); }
            ));
          });
        } else {
          methodsBox.appendChild(button(method.label, "primary", "pay-" + method.method,
            function () { pay(method.method, null); }));
        }
      });
    }
    describeState(order);
    dialog.hidden = false;
  }

  function describeState(order) {
    var text = {
      created: ["", ""],
      paying: ["Waiting for the payment provider…", ""],
      paid: ["Paid. Your purchase is on its way.", "ok"],
      delivered: ["Paid and delivered.", "ok"],
      failed: ["Paid; delivery to the game is delayed. Support has been notified.", "bad"],
      declined: ["The payment was declined. You can try again.", "bad"]
    }[order.state] || [order.state, ""];
    setStatus(text[0], text[1]);
    dialog.dataset.state = order.state;
  }

  function setBusy(busy) {
    Array.prototype.forEach.call(methodsBox.querySelectorAll("button"), function (element) {
      element.disabled = busy;
    });
  }

  function pay(method, option) {
    setBusy(true);
    setStatus("Processing…", "");
    request("POST", "/payments/orders/" + encodeURIComponent(current.orderId) + "/pay",
      { method: method, option: option })
      .then(function (data) { afterChange(data); })
      .catch(function (error) { setBusy(false); setStatus(error.message, "bad"); });
  }

  function afterChange(data) {
    showOrder(data.order, data.methods || []);
    refreshBalance();
    if (data.order.state === "paying") {
      clearTimeout(pollTimer);
      pollTimer = setTimeout(poll, config.orderPollMs);
    } else {
      tellGame(data.order);
    }
  }

  function poll() {
    if (!current) { return; }
    request("GET", "/payments/orders/" + encodeURIComponent(current.orderId))
      .then(afterChange)
      .catch(function () { pollTimer = setTimeout(poll, config.orderPollMs * 2); });
  }

  function showError(message) {
    current = null;
    ["pay-product", "pay-price", "pay-quantity", "pay-total", "pay-description"].forEach(function (id) {
      document.getElementById(id).textContent = "";
    });
    methodsBox.textContent = "";
    setStatus(message, "bad");
    dialog.dataset.state = "error";
    dialog.hidden = false;
  }

  document.getElementById("pay-close").addEventListener("click", function () {
    dialog.hidden = true;
    clearTimeout(pollTimer);
  });

  window.addEventListener("message", function (event) {
    if (event.source !== frame.contentWindow || event.origin !== config.gameOrigin) {
      return; // not from our game: ignored
    }
    var fields;
    try {
      fields = purchaseFrom(event.data);
    } catch (error) {
      showError("The game sent an invalid purchase: " + error.message);
      return;
    }
    if (!fields) { return; }
    request("POST", "/payments/orders", { token: config.token, message: fields })
      .then(function (data) { showOrder(data.order, data.methods || []); if (data.order.state === "paying") { poll(); } })
      .catch(function (error) { showError(error.message); });
  });
}());
