// recond's `lodash` module: the lodash functions IDM's scripts use, written for recond
// (not lodash's code). Iteratees accept lodash's shorthands: a function, a property name or
// path ('a.b'), an object (matches) or a [path, value] pair (matchesProperty).
// Both lodash 3 names (contains, pluck, indexBy, first, rest, any, all, object, pairs) and
// lodash 4 names (includes, map with a key, keyBy, head, tail, some, every, fromPairs,
// toPairs) are provided.
'use strict';

var hasOwn = Object.prototype.hasOwnProperty;
var toStr = Object.prototype.toString;

function isArray(v) { return Array.isArray(v); }
function isObject(v) { return v !== null && (typeof v === 'object' || typeof v === 'function'); }
function isObjectLike(v) { return v !== null && typeof v === 'object'; }
function isPlainObject(v) {
    if (!isObjectLike(v) || toStr.call(v) !== '[object Object]') return false;
    var proto = Object.getPrototypeOf(v);
    return proto === null || proto === Object.prototype;
}
function isString(v) { return typeof v === 'string' || toStr.call(v) === '[object String]'; }
function isNumber(v) { return typeof v === 'number' || toStr.call(v) === '[object Number]'; }
function isBoolean(v) { return v === true || v === false || toStr.call(v) === '[object Boolean]'; }
function isFunction(v) { return typeof v === 'function'; }
function isDate(v) { return toStr.call(v) === '[object Date]'; }
function isRegExp(v) { return toStr.call(v) === '[object RegExp]'; }
function isUndefined(v) { return v === undefined; }
function isNull(v) { return v === null; }
function isNil(v) { return v === null || v === undefined; }
function isNaN_(v) { return isNumber(v) && v != +v; }
function isFinite_(v) { return typeof v === 'number' && isFinite(v); }
function isInteger(v) { return Number.isInteger(v); }
function isArrayLike(v) {
    return v != null && typeof v !== 'function' && typeof v.length === 'number' &&
        v.length >= 0 && v.length % 1 === 0;
}

function keys(o) { return o == null ? [] : Object.keys(Object(o)); }
function values(o) { return keys(o).map(function (k) { return o[k]; }); }
function has(o, path) {
    var p = toPath(path);
    for (var i = 0; i < p.length; i++) {
        if (o == null || !hasOwn.call(Object(o), p[i])) return false;
        o = o[p[i]];
    }
    return p.length > 0;
}
function toPath(path) {
    if (isArray(path)) return path.slice();
    if (path == null) return [];
    var out = [];
    String(path).replace(/[^.[\]]+|\[(?:(-?\d+)|(["'])(.*?)\2)\]/g, function (m, n, q, s) {
        out.push(q ? s : (n !== undefined ? n : m));
        return m;
    });
    return out;
}
function get(o, path, dflt) {
    var p = toPath(path);
    for (var i = 0; i < p.length && o != null; i++) o = o[p[i]];
    return (i === p.length && o !== undefined) ? o : dflt;
}
function set(o, path, value) {
    if (!isObject(o)) return o;
    var p = toPath(path), cur = o;
    for (var i = 0; i < p.length - 1; i++) {
        if (!isObject(cur[p[i]])) cur[p[i]] = /^\d+$/.test(p[i + 1]) ? [] : {};
        cur = cur[p[i]];
    }
    if (p.length) cur[p[p.length - 1]] = value;
    return o;
}

function identity(v) { return v; }
function noop() {}
function constant(v) { return function () { return v; }; }
function property(path) { return function (o) { return get(o, path); }; }
function matches(src) {
    return function (o) { return isMatch(o, src); };
}
function matchesProperty(path, value) {
    return function (o) { return isEqual(get(o, path), value); };
}
function isMatch(o, src) {
    if (o == null) return keys(src).length === 0;
    return keys(src).every(function (k) {
        var sv = src[k], ov = o[k];
        if (isObjectLike(sv) && !isArray(sv)) return isObjectLike(ov) && isMatch(ov, sv);
        return isEqual(ov, sv);
    });
}
function iteratee(f) {
    if (f == null) return identity;
    if (typeof f === 'function') return f;
    if (isArray(f)) return matchesProperty(f[0], f[1]);
    if (typeof f === 'object') return matches(f);
    return property(f);
}

// Collections: arrays, array-likes and objects (own enumerable keys).
function each(c, f) {
    if (c == null) return c;
    if (isArrayLike(c)) {
        for (var i = 0; i < c.length; i++) if (f(c[i], i, c) === false) break;
    } else {
        var ks = keys(c);
        for (var j = 0; j < ks.length; j++) if (f(c[ks[j]], ks[j], c) === false) break;
    }
    return c;
}
function forEachRight(c, f) {
    var items = toPairsOf(c);
    for (var i = items.length - 1; i >= 0; i--) if (f(items[i][1], items[i][0], c) === false) break;
    return c;
}
function toPairsOf(c) {
    var out = [];
    each(c, function (v, k) { out.push([k, v]); });
    return out;
}
function map(c, f) {
    f = iteratee(f);
    var out = [];
    each(c, function (v, k, col) { out.push(f(v, k, col)); });
    return out;
}
function filter(c, f) {
    f = iteratee(f);
    var out = [];
    each(c, function (v, k, col) { if (f(v, k, col)) out.push(v); });
    return out;
}
function reject(c, f) {
    f = iteratee(f);
    return filter(c, function (v, k, col) { return !f(v, k, col); });
}
function find(c, f) {
    f = iteratee(f);
    var found;
    each(c, function (v, k, col) { if (f(v, k, col)) { found = v; return false; } });
    return found;
}
function findLast(c, f) {
    f = iteratee(f);
    var found;
    forEachRight(c, function (v, k, col) { if (f(v, k, col)) { found = v; return false; } });
    return found;
}
function findIndex(a, f) {
    f = iteratee(f);
    for (var i = 0; a != null && i < a.length; i++) if (f(a[i], i, a)) return i;
    return -1;
}
function findKey(o, f) {
    f = iteratee(f);
    var found;
    each(o, function (v, k, col) { if (f(v, k, col)) { found = k; return false; } });
    return found;
}
function reduce(c, f, acc) {
    var first = arguments.length < 3;
    each(c, function (v, k, col) {
        if (first) { acc = v; first = false; } else { acc = f(acc, v, k, col); }
    });
    return acc;
}
function some(c, f) {
    f = iteratee(f);
    var r = false;
    each(c, function (v, k, col) { if (f(v, k, col)) { r = true; return false; } });
    return r;
}
function every(c, f) {
    f = iteratee(f);
    var r = true;
    each(c, function (v, k, col) { if (!f(v, k, col)) { r = false; return false; } });
    return r;
}
function includes(c, target, from) {
    if (c == null) return false;
    if (isString(c)) return c.indexOf(target, from || 0) !== -1;
    var vs = isArrayLike(c) ? Array.prototype.slice.call(c) : values(c);
    for (var i = from || 0; i < vs.length; i++) if (sameValueZero(vs[i], target)) return true;
    return false;
}
function sameValueZero(a, b) { return a === b || (a !== a && b !== b); }
function size(c) {
    if (c == null) return 0;
    return isArrayLike(c) ? c.length : keys(c).length;
}
function toArray(c) {
    if (c == null) return [];
    if (isString(c)) return c.split('');
    return isArrayLike(c) ? Array.prototype.slice.call(c) : values(c);
}
function pluck(c, path) { return map(c, property(path)); }
function groupBy(c, f) {
    f = iteratee(f);
    var out = {};
    each(c, function (v) {
        var k = f(v);
        (hasOwn.call(out, k) ? out[k] : (out[k] = [])).push(v);
    });
    return out;
}
function keyBy(c, f) {
    f = iteratee(f);
    var out = {};
    each(c, function (v) { out[f(v)] = v; });
    return out;
}
function countBy(c, f) {
    f = iteratee(f);
    var out = {};
    each(c, function (v) { var k = f(v); out[k] = (out[k] || 0) + 1; });
    return out;
}
function partition(c, f) {
    f = iteratee(f);
    var yes = [], no = [];
    each(c, function (v) { (f(v) ? yes : no).push(v); });
    return [yes, no];
}
function compareValues(a, b) {
    if (a === b) return 0;
    if (a === undefined) return 1;
    if (b === undefined) return -1;
    if (a === null) return 1;
    if (b === null) return -1;
    return a < b ? -1 : (a > b ? 1 : 0);
}
function sortBy(c) {
    var fs = Array.prototype.slice.call(arguments, 1);
    fs = flatten(fs.length ? fs : [identity]).map(iteratee);
    return orderBy(c, fs, []);
}
function orderBy(c, fs, orders) {
    fs = (isArray(fs) ? fs : [fs]).map(iteratee);
    orders = isArray(orders) ? orders : [orders];
    var items = map(c, function (v, i) {
        return { v: v, i: i, k: fs.map(function (f) { return f(v); }) };
    });
    items.sort(function (a, b) {
        for (var j = 0; j < fs.length; j++) {
            var r = compareValues(a.k[j], b.k[j]);
            if (r) return orders[j] === 'desc' ? -r : r;
        }
        return a.i < b.i ? -1 : 1;
    });
    return items.map(function (x) { return x.v; });
}
function min(a) { return minBy(a, identity); }
function max(a) { return maxBy(a, identity); }
function minBy(a, f) {
    f = iteratee(f);
    var best, bestK;
    each(a, function (v) { var k = f(v); if (bestK === undefined || k < bestK) { best = v; bestK = k; } });
    return best;
}
function maxBy(a, f) {
    f = iteratee(f);
    var best, bestK;
    each(a, function (v) { var k = f(v); if (bestK === undefined || k > bestK) { best = v; bestK = k; } });
    return best;
}
function sum(a) { return sumBy(a, identity); }
function sumBy(a, f) {
    f = iteratee(f);
    return reduce(a, function (s, v) { var x = f(v); return x === undefined ? s : s + x; }, 0);
}
function mean(a) { return size(a) ? sum(a) / size(a) : NaN; }

// Arrays.
function first(a) { return a != null && a.length ? a[0] : undefined; }
function last(a) { return a != null && a.length ? a[a.length - 1] : undefined; }
function rest(a) { return a == null ? [] : Array.prototype.slice.call(a, 1); }
function initial(a) { return a == null ? [] : Array.prototype.slice.call(a, 0, -1); }
function take(a, n) { return a == null ? [] : Array.prototype.slice.call(a, 0, n === undefined ? 1 : Math.max(0, n)); }
function drop(a, n) { return a == null ? [] : Array.prototype.slice.call(a, n === undefined ? 1 : Math.max(0, n)); }
function compact(a) { return filter(a, identity); }
function flatten(a, deep) {
    var out = [];
    (function walk(xs, depth) {
        for (var i = 0; xs != null && i < xs.length; i++) {
            if (isArray(xs[i]) && (deep || depth === 0)) walk(xs[i], depth + 1);
            else out.push(xs[i]);
        }
    })(a, 0);
    return out;
}
function flattenDeep(a) { return flatten(a, true); }
function uniq(a, f) {
    if (typeof f === 'boolean') f = arguments[2];
    f = iteratee(f);
    var seen = [], out = [];
    each(a, function (v) {
        var k = f(v);
        if (!seen.some(function (s) { return sameValueZero(s, k); })) { seen.push(k); out.push(v); }
    });
    return out;
}
function uniqBy(a, f) { return uniq(a, f); }
function union() { return uniq(flatten(Array.prototype.slice.call(arguments))); }
function difference(a) {
    var others = flatten(Array.prototype.slice.call(arguments, 1));
    return filter(a, function (v) { return !includes(others, v); });
}
function without(a) {
    var others = Array.prototype.slice.call(arguments, 1);
    return filter(a, function (v) { return !includes(others, v); });
}
function intersection(a) {
    var others = Array.prototype.slice.call(arguments, 1);
    return filter(uniq(a), function (v) {
        return others.every(function (o) { return includes(o, v); });
    });
}
function indexOf(a, v, from) {
    for (var i = from || 0; a != null && i < a.length; i++) if (sameValueZero(a[i], v)) return i;
    return -1;
}
function concat() {
    var out = [];
    each(arguments, function (v) { if (isArray(v)) out.push.apply(out, v); else out.push(v); });
    return out;
}
function chunk(a, n) {
    n = Math.max(n || 1, 1);
    var out = [];
    for (var i = 0; a != null && i < a.length; i += n) out.push(Array.prototype.slice.call(a, i, i + n));
    return out;
}
function zip() {
    var arrays = Array.prototype.slice.call(arguments);
    var n = max(map(arrays, 'length')) || 0;
    var out = [];
    for (var i = 0; i < n; i++) out.push(arrays.map(function (a) { return a[i]; }));
    return out;
}
function zipObject(ks, vs) {
    var out = {};
    each(ks, function (k, i) {
        if (isArray(k)) out[k[0]] = k[1]; else out[k] = vs ? vs[i] : undefined;
    });
    return out;
}
function fromPairs(pairs) { return zipObject(pairs); }
function range(start, end, step) {
    if (end === undefined) { end = start; start = 0; }
    step = step === undefined ? (start < end ? 1 : -1) : step;
    var out = [];
    if (step === 0) return out;
    for (var i = start; step > 0 ? i < end : i > end; i += step) out.push(i);
    return out;
}
function times(n, f) {
    f = iteratee(f);
    var out = [];
    for (var i = 0; i < n; i++) out.push(f(i));
    return out;
}
function remove(a, f) {
    f = iteratee(f);
    var removed = [];
    for (var i = 0; a != null && i < a.length;) {
        if (f(a[i], i, a)) removed.push(a.splice(i, 1)[0]); else i++;
    }
    return removed;
}

// Objects.
function assignWith(defaultsOnly, target) {
    target = target == null ? {} : Object(target);
    for (var i = 2; i < arguments.length; i++) {
        var src = arguments[i];
        if (src == null) continue;
        for (var k in src) {
            if (hasOwn.call(src, k) && (!defaultsOnly || target[k] === undefined)) target[k] = src[k];
        }
    }
    return target;
}
function assign() { return assignWith.apply(null, [false].concat(Array.prototype.slice.call(arguments))); }
function defaults() { return assignWith.apply(null, [true].concat(Array.prototype.slice.call(arguments))); }
function merge(target) {
    target = target == null ? {} : target;
    for (var i = 1; i < arguments.length; i++) mergeInto(target, arguments[i]);
    return target;
}
function mergeInto(t, s) {
    each(s, function (v, k) {
        if (isPlainObject(v) || isArray(v)) {
            if (!isObjectLike(t[k])) t[k] = isArray(v) ? [] : {};
            mergeInto(t[k], v);
        } else if (v !== undefined || !hasOwn.call(t, k)) {
            t[k] = v;
        }
    });
}
function pick(o) {
    var ks = flatten(Array.prototype.slice.call(arguments, 1));
    var out = {};
    if (o == null) return out;
    if (ks.length === 1 && typeof ks[0] === 'function') {
        var f = ks[0];
        each(o, function (v, k) { if (f(v, k)) out[k] = v; });
        return out;
    }
    each(ks, function (k) { if (has(o, k)) set(out, k, get(o, k)); });
    return out;
}
function omit(o) {
    var ks = flatten(Array.prototype.slice.call(arguments, 1));
    var out = {};
    if (o == null) return out;
    var f = ks.length === 1 && typeof ks[0] === 'function' ? ks[0] : null;
    each(o, function (v, k) {
        if (f ? !f(v, k) : ks.indexOf(k) === -1) out[k] = v;
    });
    return out;
}
function mapValues(o, f) {
    f = iteratee(f);
    var out = {};
    each(o, function (v, k, col) { out[k] = f(v, k, col); });
    return out;
}
function mapKeys(o, f) {
    f = iteratee(f);
    var out = {};
    each(o, function (v, k, col) { out[f(v, k, col)] = v; });
    return out;
}
function forOwn(o, f) { return each(o, f); }
function forIn(o, f) {
    for (var k in o) if (f(o[k], k, o) === false) break;
    return o;
}
function invert(o) {
    var out = {};
    each(o, function (v, k) { out[v] = k; });
    return out;
}
function toPairs(o) { return map(keys(o), function (k) { return [k, o[k]]; }); }
function clone(v) {
    if (!isObjectLike(v)) return v;
    if (isArray(v)) return v.slice();
    if (isDate(v)) return new Date(v.getTime());
    return assign({}, v);
}
function cloneDeep(v) {
    if (!isObjectLike(v)) return v;
    if (isDate(v)) return new Date(v.getTime());
    if (isArray(v)) return v.map(cloneDeep);
    var out = {};
    for (var k in v) if (hasOwn.call(v, k)) out[k] = cloneDeep(v[k]);
    return out;
}
function isEmpty(v) {
    if (v == null) return true;
    if (isArrayLike(v) || isString(v)) return v.length === 0;
    if (isObjectLike(v)) return keys(v).length === 0;
    return true;
}
function isEqual(a, b) {
    if (a === b || (a !== a && b !== b)) return true;
    if (!isObjectLike(a) || !isObjectLike(b)) return false;
    if (toStr.call(a) !== toStr.call(b)) return false;
    if (isDate(a)) return a.getTime() === b.getTime();
    if (isArray(a)) {
        if (a.length !== b.length) return false;
        for (var i = 0; i < a.length; i++) if (!isEqual(a[i], b[i])) return false;
        return true;
    }
    var ka = keys(a), kb = keys(b);
    if (ka.length !== kb.length) return false;
    return ka.every(function (k) { return hasOwn.call(b, k) && isEqual(a[k], b[k]); });
}

// Strings and functions.
function toString_(v) { return v == null ? '' : String(v); }
function trim(s, chars) {
    s = toString_(s);
    if (chars === undefined) return s.trim();
    var set_ = toString_(chars), i = 0, j = s.length;
    while (i < j && set_.indexOf(s[i]) !== -1) i++;
    while (j > i && set_.indexOf(s[j - 1]) !== -1) j--;
    return s.slice(i, j);
}
function startsWith(s, t, pos) { return toString_(s).startsWith(t, pos); }
function endsWith(s, t, pos) { return toString_(s).endsWith(t, pos); }
function capitalize(s) { s = toString_(s); return s.charAt(0).toUpperCase() + s.slice(1).toLowerCase(); }
function words(s) { return toString_(s).match(/[A-Z]{2,}(?=[A-Z][a-z]|\b|[^a-zA-Z])|[A-Z]?[a-z]+|[A-Z]+|\d+/g) || []; }
function camelCase(s) {
    return words(s).map(function (w, i) { return i ? capitalize(w) : w.toLowerCase(); }).join('');
}
function kebabCase(s) { return words(s).map(function (w) { return w.toLowerCase(); }).join('-'); }
function snakeCase(s) { return words(s).map(function (w) { return w.toLowerCase(); }).join('_'); }
function escape(s) {
    return toString_(s).replace(/[&<>"']/g, function (c) {
        return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
}
function once(f) {
    var done = false, r;
    return function () { if (!done) { done = true; r = f.apply(this, arguments); } return r; };
}
function partial(f) {
    var bound = Array.prototype.slice.call(arguments, 1);
    return function () { return f.apply(this, bound.concat(Array.prototype.slice.call(arguments))); };
}
var idCounter = 0;
function uniqueId(prefix) { idCounter += 1; return toString_(prefix) + idCounter; }

// Chaining: _(value) / _.chain(value) ... .value().
function Wrapped(v) { this.__v = v; }
Wrapped.prototype.value = function () { return this.__v; };
Wrapped.prototype.valueOf = Wrapped.prototype.value;
Wrapped.prototype.toJSON = Wrapped.prototype.value;

function _(v) { return v instanceof Wrapped ? v : new Wrapped(v); }
var fns = {
    isArray: isArray, isObject: isObject, isObjectLike: isObjectLike, isPlainObject: isPlainObject,
    isString: isString, isNumber: isNumber, isBoolean: isBoolean, isFunction: isFunction,
    isDate: isDate, isRegExp: isRegExp, isUndefined: isUndefined, isNull: isNull, isNil: isNil,
    isNaN: isNaN_, isFinite: isFinite_, isInteger: isInteger, isArrayLike: isArrayLike,
    isEmpty: isEmpty, isEqual: isEqual, isMatch: isMatch,
    keys: keys, values: values, has: has, get: get, set: set, toPath: toPath,
    identity: identity, noop: noop, constant: constant, property: property, matches: matches,
    matchesProperty: matchesProperty, iteratee: iteratee, callback: iteratee,
    each: each, forEach: each, forEachRight: forEachRight, eachRight: forEachRight,
    map: map, collect: map, filter: filter, select: filter, reject: reject,
    find: find, detect: find, findLast: findLast, findIndex: findIndex, findKey: findKey,
    reduce: reduce, foldl: reduce, inject: reduce, some: some, any: some, every: every, all: every,
    includes: includes, contains: includes, include: includes, size: size, toArray: toArray,
    pluck: pluck, groupBy: groupBy, keyBy: keyBy, indexBy: keyBy, countBy: countBy,
    partition: partition, sortBy: sortBy, orderBy: orderBy, sortByOrder: orderBy,
    min: min, max: max, minBy: minBy, maxBy: maxBy, sum: sum, sumBy: sumBy, mean: mean,
    first: first, head: first, last: last, rest: rest, tail: rest, initial: initial,
    take: take, drop: drop, compact: compact, flatten: flatten, flattenDeep: flattenDeep,
    uniq: uniq, unique: uniq, uniqBy: uniqBy, union: union, difference: difference,
    without: without, intersection: intersection, indexOf: indexOf, concat: concat,
    chunk: chunk, zip: zip, zipObject: zipObject, object: zipObject, fromPairs: fromPairs,
    range: range, times: times, remove: remove,
    assign: assign, extend: assign, assignIn: assign, defaults: defaults, merge: merge,
    pick: pick, omit: omit, mapValues: mapValues, mapKeys: mapKeys, forOwn: forOwn,
    forIn: forIn, invert: invert, toPairs: toPairs, pairs: toPairs, entries: toPairs,
    clone: clone, cloneDeep: cloneDeep,
    toString: toString_, trim: trim, startsWith: startsWith, endsWith: endsWith,
    capitalize: capitalize, camelCase: camelCase, kebabCase: kebabCase, snakeCase: snakeCase,
    words: words, escape: escape, once: once, partial: partial, uniqueId: uniqueId
};
each(fns, function (f, name) {
    _[name] = f;
    Wrapped.prototype[name] = function () {
        var r = f.apply(null, [this.__v].concat(Array.prototype.slice.call(arguments)));
        return new Wrapped(r);
    };
});
_.chain = function (v) { return _(v); };
Wrapped.prototype.chain = function () { return this; };
_.VERSION = 'recond';

module.exports = _;
