module github.com/lemonade-lb/lemonade/bench/fairness

go 1.26
