module github.com/lemonade-lb/lemonade/worker-nethttp

go 1.26
