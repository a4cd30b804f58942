module github.com/lemonade-lb/lemonade/service

go 1.26
