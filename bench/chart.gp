# bench/chart.gp - the benchmark chart (bench/run.sh calls it):
#   gnuplot -e "data='chart.dat'; out='results.png'; title='run ...'" bench/chart.gp
# data: one line per scenario: "name" median-req/s min max median-CPU-us/req.
# Left: requests per second (bars at the median, whiskers min to max);
# right: CPU microseconds per request (log scale: Express is 30x nginx).
set terminal pngcairo size 1400,620 font "sans,10"
set output out
set multiplot layout 1,2 title title font "sans,11"

set style data histograms
set style fill solid 0.75 border -1
set boxwidth 0.8
set grid ytics
set xtics rotate by -35 left nomirror
set key off
set bmargin 8
set rmargin 14

set title "requests per second (median, min–max)"
set style histogram errorbars gap 1 lw 1
stats data using 4 nooutput
set yrange [0:STATS_max * 1.12]
plot data using 2:3:4:xtic(1) linecolor rgb "#3b75af", \
     data using 0:4:(sprintf("%.0f", $2)) with labels offset 0,0.8 font "sans,9"

set title "CPU µs per request of the process(es) under test (log scale)"
set style histogram clustered gap 1
set logscale y
stats data using 5 nooutput
set yrange [1:10 ** ceil(log10(STATS_max) + 0.25)]
plot data using 5:xtic(1) linecolor rgb "#d2722e", \
     data using 0:5:(sprintf("%.0f", $5)) with labels offset 0,0.7 font "sans,9"

unset multiplot
