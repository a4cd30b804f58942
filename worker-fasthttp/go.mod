module github.com/lemonade-lb/lemonade/worker-fasthttp

go 1.26
