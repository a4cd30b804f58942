// Package service is the framework-free core of a Lemonade demo worker: its
// configuration, the Health and Work operations, and the whole HTTP contract
// (routes, query parsing, status codes and the exact response bytes).
//
// The worker-* modules adapt it to one web framework each. They only route
// requests to the Handle* methods and copy the returned Response to the wire,
// so every framework answers with the same bytes. Package servicetest checks
// that they do.
package service
