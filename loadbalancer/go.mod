module github.com/lemonade-lb/lemonade/loadbalancer

go 1.26

replace github.com/lemonade-lb/lemonade/observability => ../observability
