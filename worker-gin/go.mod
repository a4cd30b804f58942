module github.com/lemonade-lb/lemonade/worker-gin

go 1.26
