module github.com/lemonade-lb/lemonade/worker-echo

go 1.26
