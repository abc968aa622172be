// bench/express/server.js - the guide's Express gateway, built as the guide
// builds it ("Option A: Custom Built"), as the benchmark's baseline.
//
// One async middleware verifies the Bearer JWT (401 without a valid one),
// then http-proxy-middleware sends the request to the upstream. The only
// changes to the guide's snippet: the algorithm is pinned to HS256 (a
// token must not choose how it is checked), /health answers before auth so
// bench/run.sh can poll for readiness, and the upstream connections are
// pooled with the guide's own keep-alive settings (maxSockets 100,
// maxFreeSockets 10) on Node's built-in agent, which since Node 19 does
// what the guide's agentkeepalive package did. Without an agent,
// http-proxy opens a new connection for every request.
//
// It does less than the kit's pipeline (no request id, access log,
// metrics, CORS or rate limit), so the comparison flatters it.
//
// Environment: PORT, JWT_SECRET, UPSTREAM_URL (http://127.0.0.1:PORT).
'use strict';

const http = require('http');
const express = require('express');
const jwt = require('jsonwebtoken');
const { createProxyMiddleware } = require('http-proxy-middleware');

const port = Number(process.env.PORT || 3000);
const secret = process.env.JWT_SECRET;
const upstream = process.env.UPSTREAM_URL;
if (!secret || !upstream) {
  console.error('server.js: JWT_SECRET and UPSTREAM_URL are required');
  process.exit(1);
}

const keepaliveAgent = new http.Agent({
  keepAlive: true,
  maxSockets: 100,     // at most 100 connections to the upstream
  maxFreeSockets: 10,  // keep 10 idle ones ready
  timeout: 60000,
});

const app = express();

app.get('/health', (req, res) => res.json({ status: 'healthy' }));

// The guide's validateToken(): the decoded claims, or null.
async function validateToken(authHeader) {
  const token = (authHeader || '').replace('Bearer ', '');
  try {
    return jwt.verify(token, secret, { algorithms: ['HS256'] });
  } catch (error) {
    return null;
  }
}

// The guide's middleware pipeline: authentication first.
app.use(async (req, res, next) => {
  const user = await validateToken(req.headers.authorization);
  if (!user) {
    return res.status(401).json({ error: 'Invalid token' });
  }
  req.user = user;
  next();
});

// The guide's routing: everything under /bench goes to the upstream.
app.use('/bench', createProxyMiddleware({
  target: upstream,
  changeOrigin: true,
  agent: keepaliveAgent,
}));

app.listen(port, '127.0.0.1', () => {
  console.log(`express gateway on 127.0.0.1:${port} -> ${upstream}`);
});
