module github.com/lemonade-lb/lemonade/lemonade

go 1.26
